//! Query complexity scorer: text -> score in [0,1] with named feature contributions.
//!
//! The score is a transparent linear model: `clamp(bias + sum(weight * value), 0, 1)`, where
//! every feature value is in [0,1] and is extracted in one pass over the bytes of the query
//! with small static keyword tables (no regex, no allocation per word). A caller can show
//! which features pushed a query towards the large model.
//!
//! The weights and [`DEFAULT_THRESHOLD`] are calibrated offline on the `dev` split of the
//! routing-eval data with `llm-mux-eval tune` and `llm-mux-eval calibrate`; see
//! `docs/routing-eval.md`.

use serde::Serialize;

/// One feature's part in a score: its raw value and what it added to the score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureContribution {
    /// Stable feature name, e.g. `"reasoning"`.
    pub name: &'static str,
    /// Raw feature value in [0,1].
    pub value: f64,
    /// `weight * value`, the amount added to the score (may be negative).
    pub contribution: f64,
}

/// A complexity score in [0,1] and the features that produced it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplexityScore {
    /// `clamp(bias + sum of contributions, 0, 1)`; higher means route to the larger model.
    pub score: f64,
    /// Every feature, in [`FEATURE_NAMES`] order.
    pub features: Vec<FeatureContribution>,
}

/// Score at or above which a query goes to the large tier.
///
/// Calibrated with `llm-mux-eval calibrate --target-quality 0.95 --split dev`: the lowest
/// large-model share whose mean answer quality on the dev split (MMLU, GSM8K, MT-Bench) is
/// at least 95% of always using the large model. See `docs/routing-eval.md` for what it
/// yields on the test split.
pub const DEFAULT_THRESHOLD: f64 = 0.3103;

/// Number of features.
pub const FEATURE_COUNT: usize = 12;

/// Feature names, in the order of [`Features::values`] and [`Weights::feature_weights`].
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "length",
    "reasoning",
    "comparison",
    "code",
    "math",
    "multi_part",
    "constraints",
    "creative",
    "technical",
    "vocabulary",
    "multiple_choice",
    "simple",
];

/// Raw feature values of one query, each in [0,1].
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Features {
    /// Log-scaled estimated token count (1.0 at about 2,000 tokens).
    pub length: f64,
    /// Reasoning cues: why, explain, prove, derive, step by step, analyze, justify...
    pub reasoning: f64,
    /// Comparison cues: compare, versus, difference, pros and cons, trade-off...
    pub comparison: f64,
    /// Code: fences, language keywords, identifiers, symbols such as `{`, `();`, `=>`.
    pub code: f64,
    /// Math: numbers, operators between operands, words such as solve, integral, percent.
    pub math: f64,
    /// Multi-part instructions: numbered or bulleted lines, several questions, "and then".
    pub multi_part: f64,
    /// Output constraints: must, exactly, at least, no more than, format as, in N words.
    pub constraints: f64,
    /// Creative or open-ended writing: story, poem, essay, imagine, draft...
    pub creative: f64,
    /// Specialist vocabulary: law, medicine, science, economics, computer science.
    pub technical: f64,
    /// Share of long words (9+ letters), scaled so that 30% long words gives 1.0.
    pub vocabulary: f64,
    /// Multiple-choice layout: answer option lines such as `A. ...`, `(B) ...`.
    pub multiple_choice: f64,
    /// Trivial requests: greetings, thanks, translate, define, spell..., and short requests
    /// (12 words or fewer) without any complexity cue.
    pub simple: f64,
}

impl Features {
    /// Values in [`FEATURE_NAMES`] order.
    pub fn values(&self) -> [f64; FEATURE_COUNT] {
        [
            self.length,
            self.reasoning,
            self.comparison,
            self.code,
            self.math,
            self.multi_part,
            self.constraints,
            self.creative,
            self.technical,
            self.vocabulary,
            self.multiple_choice,
            self.simple,
        ]
    }
}

/// Weights of the linear score; `Default` holds the calibrated ones.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weights {
    /// Constant added to every score.
    pub bias: f64,
    /// Weight of [`Features::length`].
    pub length: f64,
    /// Weight of [`Features::reasoning`].
    pub reasoning: f64,
    /// Weight of [`Features::comparison`].
    pub comparison: f64,
    /// Weight of [`Features::code`].
    pub code: f64,
    /// Weight of [`Features::math`].
    pub math: f64,
    /// Weight of [`Features::multi_part`].
    pub multi_part: f64,
    /// Weight of [`Features::constraints`].
    pub constraints: f64,
    /// Weight of [`Features::creative`].
    pub creative: f64,
    /// Weight of [`Features::technical`].
    pub technical: f64,
    /// Weight of [`Features::vocabulary`].
    pub vocabulary: f64,
    /// Weight of [`Features::multiple_choice`].
    pub multiple_choice: f64,
    /// Weight of [`Features::simple`].
    pub simple: f64,
}

impl Default for Weights {
    /// The weights calibrated on the dev split (`llm-mux-eval tune --split dev`, see
    /// `docs/routing-eval.md`): dev APGR 0.641, from 0.597 for the hand-set prior.
    fn default() -> Self {
        Weights {
            bias: 0.230,
            length: 0.330,
            reasoning: 0.200,
            comparison: 0.140,
            code: 0.120,
            math: 0.050,
            multi_part: 0.280,
            constraints: 0.040,
            creative: -0.080,
            technical: 0.110,
            vocabulary: -0.020,
            multiple_choice: -0.180,
            simple: -0.310,
        }
    }
}

impl Weights {
    /// Feature weights in [`FEATURE_NAMES`] order (without the bias).
    pub fn feature_weights(&self) -> [f64; FEATURE_COUNT] {
        [
            self.length,
            self.reasoning,
            self.comparison,
            self.code,
            self.math,
            self.multi_part,
            self.constraints,
            self.creative,
            self.technical,
            self.vocabulary,
            self.multiple_choice,
            self.simple,
        ]
    }

    /// Builds weights from a bias and feature weights in [`FEATURE_NAMES`] order.
    pub fn from_parts(bias: f64, w: [f64; FEATURE_COUNT]) -> Self {
        Weights {
            bias,
            length: w[0],
            reasoning: w[1],
            comparison: w[2],
            code: w[3],
            math: w[4],
            multi_part: w[5],
            constraints: w[6],
            creative: w[7],
            technical: w[8],
            vocabulary: w[9],
            multiple_choice: w[10],
            simple: w[11],
        }
    }

    /// `bias + sum(weight * value)`, not clamped: the ranking key used when tuning.
    pub fn linear(&self, features: &Features) -> f64 {
        let w = self.feature_weights();
        let v = features.values();
        let mut sum = self.bias;
        for i in 0..FEATURE_COUNT {
            sum += w[i] * v[i];
        }
        sum
    }
}

/// Scores a query with the calibrated default weights.
pub fn score(text: &str) -> ComplexityScore {
    score_with(text, &Weights::default())
}

/// Scores a query with the given weights.
pub fn score_with(text: &str, weights: &Weights) -> ComplexityScore {
    score_features(&extract_features(text), weights)
}

/// Scores already extracted features (lets tuning reuse one extraction per prompt).
pub fn score_features(features: &Features, weights: &Weights) -> ComplexityScore {
    let w = weights.feature_weights();
    let v = features.values();
    let mut sum = weights.bias;
    let mut out = Vec::with_capacity(FEATURE_COUNT);
    for i in 0..FEATURE_COUNT {
        let contribution = w[i] * v[i];
        sum += contribution;
        out.push(FeatureContribution {
            name: FEATURE_NAMES[i],
            value: v[i],
            contribution,
        });
    }
    let score = if sum.is_finite() {
        sum.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ComplexityScore {
        score,
        features: out,
    }
}

// ---------------------------------------------------------------------------------------
// Keyword tables. Each entry is a lowercase ASCII stem that matches any word starting with
// it, unless it carries `EXACT`. Entries are sorted (checked by a test) so a word is only
// compared with the entries sharing its first two letters.

const REASON: u16 = 1 << 0;
const COMPARE: u16 = 1 << 1;
const CODE: u16 = 1 << 2;
const MATH: u16 = 1 << 3;
const SEQUENCE: u16 = 1 << 4;
const CONSTRAINT: u16 = 1 << 5;
const CREATIVE: u16 = 1 << 6;
const TECH: u16 = 1 << 7;
const SIMPLE: u16 = 1 << 8;
/// The word must equal the entry, not just start with it.
const EXACT: u16 = 1 << 15;

#[rustfmt::skip]
static KEYWORDS: &[(&[u8], u16)] = &[
    (b"acceleration", TECH), (b"acid", TECH | EXACT), (b"acute", TECH), (b"additionally", SEQUENCE),
    (b"advantag", COMPARE), (b"afterwards", SEQUENCE), (b"algebra", MATH), (b"algorithm", CODE | TECH),
    (b"amendment", TECH), (b"analyse", REASON), (b"analysis", REASON), (b"analytic", REASON), (b"analyz", REASON), (b"angle", MATH), (b"antonym", SIMPLE),
    (b"api", CODE | EXACT), (b"area", MATH | EXACT), (b"argu", REASON), (b"array", CODE),
    (b"assess", REASON), (b"async", CODE | EXACT), (b"average", MATH), (b"avoid", CONSTRAINT),
    (b"await", CODE | EXACT), (b"axiom", TECH), (b"bash", CODE | EXACT), (b"bayes", TECH),
    (b"better", COMPARE | EXACT), (b"binary", CODE), (b"blog", CREATIVE), (b"bool", CODE),
    (b"bug", CODE), (b"bullet", CONSTRAINT), (b"calculat", MATH), (b"capital", SIMPLE | EXACT),
    (b"caus", REASON), (b"chromosom", TECH), (b"chronic", TECH),
    (b"circuit", TECH), (b"classifier", TECH), (b"clinical", TECH), (b"code", CODE),
    (b"coding", CODE), (b"compar", COMPARE), (b"compil", CODE | TECH), (b"complexity", TECH),
    (b"compose", CREATIVE), (b"concise", CONSTRAINT), (b"consequen", REASON), (b"const", CODE | EXACT),
    (b"constitution", TECH), (b"contract", TECH), (b"contrast", COMPARE), (b"converge", MATH),
    (b"cos", MATH | EXACT), (b"court", TECH), (b"creative", CREATIVE), (b"critic", REASON),
    (b"critiq", REASON), (b"database", CODE), (b"debug", CODE), (b"deduc", REASON),
    (b"def", CODE | EXACT), (b"defendant", TECH), (b"define", SIMPLE | EXACT), (b"definition", SIMPLE),
    (b"demonstrat", REASON), (b"deontolog", TECH), (b"deriv", REASON | MATH), (b"describ", CREATIVE),
    (b"determin", REASON), (b"diagnos", TECH), (b"differ", COMPARE), (b"digit", MATH),
    (b"disadvantag", COMPARE), (b"disease", TECH), (b"distinguish", COMPARE), (b"divid", MATH),
    (b"divisib", MATH), (b"docker", CODE), (b"dose", TECH), (b"draft", CREATIVE),
    (b"elasticity", TECH), (b"electr", TECH), (b"elif", CODE | EXACT), (b"email", CREATIVE),
    (b"energy", TECH), (b"ensure", CONSTRAINT), (b"entropy", TECH), (b"enzyme", TECH),
    (b"epistem", TECH), (b"equation", MATH), (b"equilibri", TECH), (b"essay", CREATIVE),
    (b"ethic", REASON), (b"evaluat", REASON), (b"exactly", CONSTRAINT), (b"exception", CODE),
    (b"exclusively", CONSTRAINT), (b"expla", REASON), (b"exponent", MATH), (b"factor", MATH),
    (b"felony", TECH), (b"fewer", CONSTRAINT), (b"fiction", CREATIVE), (b"finally", SEQUENCE),
    (b"firstly", SEQUENCE), (b"fiscal", TECH), (b"fn", CODE | EXACT), (b"format", CONSTRAINT),
    (b"fraction", MATH), (b"frequency", TECH), (b"function", CODE), (b"furthermore", SEQUENCE),
    (b"gdp", TECH | EXACT), (b"gene", TECH), (b"geometr", MATH), (b"git", CODE | EXACT),
    (b"github", CODE), (b"golang", CODE), (b"gradient", TECH), (b"gravit", TECH),
    (b"haiku", CREATIVE), (b"hearsay", TECH), (b"hello", SIMPLE | EXACT), (b"hey", SIMPLE | EXACT),
    (b"hi", SIMPLE | EXACT), (b"html", CODE), (b"hypothes", REASON), (b"imagin", CREATIVE),
    (b"implement", CODE), (b"implica", REASON), (b"import", CODE | EXACT), (b"infection", TECH),
    (b"infer", REASON), (b"inflation", TECH), (b"int", CODE | EXACT), (b"integer", MATH),
    (b"integra", MATH), (b"isomorph", TECH), (b"isotope", TECH), (b"javascript", CODE),
    (b"joke", SIMPLE), (b"json", CODE | CONSTRAINT), (b"jurisdiction", TECH), (b"justif", REASON),
    (b"kernel", TECH), (b"lambda", CODE), (b"lemma", TECH), (b"liab", TECH),
    (b"limerick", CREATIVE), (b"logarithm", MATH), (b"logic", REASON), (b"loop", CODE),
    (b"lyrics", CREATIVE), (b"magnet", TECH), (b"marginal", TECH), (b"markov", TECH),
    (b"matri", MATH), (b"maximum", CONSTRAINT), (b"metaphys", TECH), (b"minimum", CONSTRAINT),
    (b"minus", MATH), (b"molar", TECH), (b"molecul", TECH), (b"momentum", TECH),
    (b"monetary", TECH), (b"moral", REASON), (b"moreover", SEQUENCE), (b"multipl", MATH),
    (b"must", CONSTRAINT | EXACT), (b"mutation", TECH), (b"narrative", CREATIVE), (b"negligen", TECH),
    (b"neural", TECH), (b"neuron", TECH), (b"null", CODE), (b"ontolog", TECH),
    (b"orbit", TECH), (b"oxidat", TECH), (b"particle", TECH), (b"patient", TECH),
    (b"percent", MATH), (b"perimeter", MATH), (b"persuasive", CREATIVE), (b"photon", TECH),
    (b"plaintiff", TECH), (b"plus", MATH | EXACT), (b"poem", CREATIVE), (b"poetry", CREATIVE),
    (b"pointer", CODE), (b"polynomial", MATH), (b"predicate", TECH), (b"pretend", CREATIVE),
    (b"prime", MATH), (b"printf", CODE), (b"println", CODE), (b"probabilit", MATH),
    (b"program", CODE), (b"proof", REASON), (b"proposition", TECH), (b"protein", TECH),
    (b"prove", REASON), (b"python", CODE), (b"quantum", TECH), (b"queue", CODE),
    (b"radius", MATH), (b"ratio", MATH | EXACT), (b"rationale", REASON), (b"reaction", TECH),
    (b"reason", REASON), (b"recurs", CODE), (b"regex", CODE), (b"regression", TECH),
    (b"remainder", MATH), (b"requir", CONSTRAINT), (b"roleplay", CREATIVE), (b"runtime", CODE),
    (b"rust", CODE | EXACT), (b"script", CODE), (b"secondly", SEQUENCE), (b"sin", MATH | EXACT),
    (b"slogan", CREATIVE), (b"solve", MATH), (b"song", CREATIVE), (b"spell", SIMPLE),
    (b"sql", CODE), (b"sqrt", MATH), (b"squared", MATH), (b"statute", TECH),
    (b"stories", CREATIVE), (b"story", CREATIVE), (b"strictly", CONSTRAINT), (b"struct", CODE),
    (b"subgroup", TECH), (b"subtract", MATH), (b"sum", MATH | EXACT), (b"symptom", TECH),
    (b"syndrome", TECH), (b"synonym", SIMPLE), (b"syntax", CODE), (b"tan", MATH | EXACT),
    (b"thank", SIMPLE), (b"then", SEQUENCE | EXACT), (b"theorem", MATH | TECH), (b"therap", TECH),
    (b"thermodynam", TECH), (b"thread", CODE), (b"tort", TECH | EXACT), (b"total", MATH),
    (b"tradeoff", COMPARE), (b"translat", SIMPLE), (b"triangle", MATH), (b"turing", TECH),
    (b"tweet", CREATIVE), (b"typescript", CODE), (b"utilitarian", TECH), (b"variance", MATH),
    (b"vector", MATH), (b"velocity", TECH), (b"versus", COMPARE), (b"voltage", TECH),
    (b"volume", MATH), (b"vs", COMPARE | EXACT), (b"wavelength", TECH), (b"why", REASON | EXACT),
    (b"without", CONSTRAINT),
];

/// `BUCKETS[k]..BUCKETS[k + 1]` is the range of [`STEMS`] (byte offsets) holding the
/// entries of `KEYWORDS` whose first two letters are bucket
/// `k = 26 * (first - b'a') + (second - b'a')`; the table is sorted (checked by a test).
static BUCKETS: [u16; 26 * 26 + 1] = bucket_starts();

const fn bucket_starts() -> [u16; 26 * 26 + 1] {
    let mut starts = [0u16; 26 * 26 + 1];
    let mut bucket = 0;
    let mut i = 0;
    let mut offset = 0;
    while bucket < 26 * 26 {
        starts[bucket] = offset as u16;
        while i < KEYWORDS.len() && bucket_of(KEYWORDS[i].0) == bucket {
            offset += STEM_HEADER + KEYWORDS[i].0.len();
            i += 1;
        }
        bucket += 1;
    }
    starts[26 * 26] = offset as u16;
    starts
}

/// Bucket of a stem or word starting with two lowercase ASCII letters.
const fn bucket_of(word: &[u8]) -> usize {
    (word[0] - b'a') as usize * 26 + (word[1] - b'a') as usize
}

/// Flags of a lowercase ASCII word (0 if it is no keyword).
fn keyword_flags(word: &[u8]) -> u16 {
    if word.len() < 2 || !word[0].is_ascii_lowercase() || !word[1].is_ascii_lowercase() {
        return 0;
    }
    let bucket = bucket_of(word);
    let (mut at, end) = (BUCKETS[bucket] as usize, BUCKETS[bucket + 1] as usize);
    let mut flags = 0;
    while at < end {
        let len = STEMS[at] as usize;
        let stem_flags = u16::from_le_bytes([STEMS[at + 1], STEMS[at + 2]]);
        let stem = &STEMS[at + STEM_HEADER..at + STEM_HEADER + len];
        let hit = word.starts_with(stem) && (stem_flags & EXACT == 0 || word.len() == len);
        if hit {
            flags |= stem_flags;
        }
        at += STEM_HEADER + len;
    }
    flags & !EXACT
}

/// Bytes before each stem in [`STEMS`]: its length, then its flags (little-endian).
const STEM_HEADER: usize = 3;

/// Length of [`STEMS`].
const STEMS_LEN: usize = stems_len();

const fn stems_len() -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < KEYWORDS.len() {
        n += STEM_HEADER + KEYWORDS[i].0.len();
        i += 1;
    }
    n
}

/// [`KEYWORDS`] as one byte string, entry after entry: the stem's length, its flags and
/// its bytes (a few KB smaller in the bundle than a table of fixed-size entries).
static STEMS: [u8; STEMS_LEN] = pack_keywords();

const fn pack_keywords() -> [u8; STEMS_LEN] {
    let mut out = [0u8; STEMS_LEN];
    let mut at = 0;
    let mut i = 0;
    while i < KEYWORDS.len() {
        let (stem, flags) = KEYWORDS[i];
        out[at] = stem.len() as u8;
        out[at + 1] = flags as u8;
        out[at + 2] = (flags >> 8) as u8;
        let mut k = 0;
        while k < stem.len() {
            out[at + STEM_HEADER + k] = stem[k];
            k += 1;
        }
        at += STEM_HEADER + stem.len();
        i += 1;
    }
    out
}

/// Flags of a two-word phrase ending with `word`, given the previous word.
///
/// Dispatches on the (short) second word first so most words cost one length check.
fn phrase_flags(prev: &[u8], word: &[u8]) -> u16 {
    if word.len() > 7 || prev.is_empty() {
        return 0;
    }
    let (heads, flag): (&[&[u8]], u16) = match word {
        b"by" => (&[b"step"], REASON),
        b"through" => (&[b"think", b"walk"], REASON),
        b"and" => (&[b"pros"], COMPARE),
        b"off" | b"offs" => (&[b"trade"], COMPARE),
        b"then" => (&[b"and"], SEQUENCE),
        b"that" => (&[b"after"], SEQUENCE),
        b"many" | b"much" => (&[b"how"], MATH),
        b"least" | b"most" => (&[b"at"], CONSTRAINT),
        b"than" => (&[b"more", b"less"], CONSTRAINT),
        b"as" => (&[b"format"], CONSTRAINT),
        b"not" => (&[b"do"], CONSTRAINT),
        b"t" => (&[b"don"], CONSTRAINT),
        b"sure" => (&[b"make"], CONSTRAINT),
        b"use" => (&[b"only"], CONSTRAINT),
        b"a" | b"an" => (&[b"write"], CREATIVE),
        b"is" => (&[b"what", b"who"], SIMPLE),
        b"morning" => (&[b"good"], SIMPLE),
        _ => return 0,
    };
    if heads.contains(&prev) {
        flag
    } else {
        0
    }
}

/// Words after a number that make "in N words" style constraints.
fn is_unit_constraint(word: &[u8]) -> bool {
    matches!(
        word,
        b"words"
            | b"word"
            | b"sentences"
            | b"sentence"
            | b"paragraphs"
            | b"paragraph"
            | b"lines"
            | b"bullet"
            | b"bullets"
            | b"items"
            | b"characters"
    )
}

/// Words before a number that enumerate parts: "Scenario 1", "Statement 2", "Step 3".
fn is_enumerator(word: &[u8]) -> bool {
    match word.first() {
        Some(b's' | b'p' | b'q' | b't' | b'c') => matches!(
            word,
            b"scenario" | b"statement" | b"step" | b"part" | b"question" | b"task" | b"case"
        ),
        _ => false,
    }
}

/// Saturating map of a non-negative count into [0,1): `x / (x + k)`.
fn saturate(x: f64, k: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else {
        x / (x + k)
    }
}

/// Longest word compared with the keyword tables (longer words cannot be keywords).
const WORD_BUF: usize = 24;

/// Counts gathered in the single pass over the text.
#[derive(Default)]
struct Counts {
    wide_chars: usize,
    words: usize,
    long_words: usize,
    numbers: usize,
    reason: usize,
    compare: usize,
    code_words: usize,
    code_symbols: usize,
    identifiers: usize,
    fences: usize,
    math_words: usize,
    operators: usize,
    money_percent: usize,
    sequence: usize,
    items: usize,
    questions: usize,
    constraint: usize,
    creative: usize,
    tech: usize,
    simple: usize,
    options: usize,
}

/// The previous word, kept for two-word phrases and "in N words" / "Scenario 1" patterns.
struct PrevWord {
    buf: [u8; WORD_BUF],
    len: usize,
    numeric: bool,
    enumerator: bool,
}

/// Byte classes for the scanner.
const C_OTHER: u8 = 0;
const C_WORD: u8 = 1; // ASCII letter, digit, underscore
const C_LEAD2: u8 = 2; // lead byte of a 2-byte UTF-8 sequence (accented Latin, Greek...)
const C_WIDE: u8 = 3; // lead byte of a 3- or 4-byte sequence (CJK, emoji)
const C_BLANK: u8 = 4; // space, tab, carriage return
const C_NEWLINE: u8 = 5;

static CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut t = [C_OTHER; 256];
    let mut b = 0usize;
    while b < 256 {
        let x = b as u8;
        t[b] = if x.is_ascii_alphanumeric() || x == b'_' {
            C_WORD
        } else if x >= 0xC0 && x < 0xE0 {
            C_LEAD2
        } else if x >= 0xE0 {
            C_WIDE
        } else if x == b' ' || x == b'\t' || x == b'\r' {
            C_BLANK
        } else if x == b'\n' {
            C_NEWLINE
        } else {
            C_OTHER
        };
        b += 1;
    }
    t
}

/// Extracts the raw features of a query in one pass over its bytes.
pub fn extract_features(text: &str) -> Features {
    let bytes = text.as_bytes();
    let n = bytes.len();
    let mut c = Counts::default();
    let mut prev = PrevWord {
        buf: [0; WORD_BUF],
        len: 0,
        numeric: false,
        enumerator: false,
    };
    let mut at_line_start = true;
    // Last non-blank byte before the current position (for operator detection).
    let mut prev_sig: u8 = b' ';
    let mut i = 0usize;

    while i < n {
        let b = bytes[i];
        match CLASS[b as usize] {
            C_WORD | C_LEAD2 => {
                if at_line_start {
                    line_start_marker(bytes, i, &mut c);
                    at_line_start = false;
                }
                // A word: ASCII alphanumerics plus 2-byte characters (with their
                // continuation byte). Wide characters end it.
                let start = i;
                let mut ascii = true;
                loop {
                    i = ascii_word_end(bytes, i);
                    if i < n && CLASS[bytes[i] as usize] == C_LEAD2 {
                        ascii = false;
                        i += 2;
                    } else {
                        break;
                    }
                }
                let end = i.min(n);
                finish_word(&bytes[start..end], ascii, &mut c, &mut prev);
                prev_sig = bytes[end - 1];
                continue;
            }
            C_BLANK => {
                i += 1;
                continue;
            }
            C_NEWLINE => {
                at_line_start = true;
                prev_sig = b' ';
                i += 1;
                continue;
            }
            C_WIDE => {
                // A wide character is a token of its own; "•" (E2 80 A2) starts a bullet.
                if at_line_start && bytes.get(i..i + 3) == Some("\u{2022}".as_bytes()) {
                    c.items += 1;
                }
                c.wide_chars += 1;
                c.words += 1;
                prev.len = 0;
                at_line_start = false;
                prev_sig = b;
                i += if b >= 0xF0 { 4 } else { 3 };
                continue;
            }
            _ => {}
        }
        match b {
            b'?' => c.questions += 1,
            b'`' => {
                if bytes.get(i..i + 3) == Some(b"```") {
                    c.fences += 1;
                    i += 2;
                } else {
                    c.code_symbols += 1;
                }
            }
            b'{' | b'}' | b';' | b'#' | b'[' | b']' => c.code_symbols += 1,
            b'(' if bytes.get(i + 1) == Some(&b')') => c.code_symbols += 1,
            b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>' | b'-' => {
                let next_sig = next_non_blank(bytes, i + 1);
                if (b == b'=' || b == b'-') && next_sig == b'>' {
                    c.code_symbols += 1; // => and ->
                } else if b == b'=' && next_sig == b'=' {
                    c.code_symbols += 1;
                } else if b == b'-' {
                    if prev_sig.is_ascii_digit() && next_sig.is_ascii_digit() {
                        c.operators += 1;
                    }
                } else if is_operand(prev_sig) && is_operand(next_sig) {
                    c.operators += 1;
                }
                if at_line_start && (b == b'-' || b == b'*') && bytes.get(i + 1) == Some(&b' ') {
                    c.items += 1;
                }
            }
            b'$' | b'%' => c.money_percent += 1,
            _ => {}
        }
        // "(A) ..." options: the parenthesis keeps the line start for the letter after it.
        at_line_start = at_line_start && b == b'(';
        prev_sig = b;
        i += 1;
    }

    // Characters, not bytes: one per non-continuation byte.
    let chars = text.chars().count();
    features_from_counts(&c, chars)
}

/// End of the run of ASCII word bytes (letters, digits, `_`) that starts at `from`.
///
/// Eight bytes at a time: a mask of which bytes are word bytes, then its first zero bit,
/// so that a short word costs one branch instead of one per byte.
#[inline(always)]
fn ascii_word_end(bytes: &[u8], from: usize) -> usize {
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let bit = |k: usize| u32::from(CLASS[chunk[k] as usize] == C_WORD) << k;
        let mask = bit(0) | bit(1) | bit(2) | bit(3) | bit(4) | bit(5) | bit(6) | bit(7);
        let run = (!mask).trailing_zeros() as usize;
        i += run;
        if run < 8 {
            return i;
        }
    }
    while i < bytes.len() && CLASS[bytes[i] as usize] == C_WORD {
        i += 1;
    }
    i
}

/// First byte at or after `from` that is not a space or tab (a space if there is none).
fn next_non_blank(bytes: &[u8], from: usize) -> u8 {
    let mut j = from;
    while j < bytes.len() && j < from + 8 {
        if bytes[j] != b' ' && bytes[j] != b'\t' {
            return bytes[j];
        }
        j += 1;
    }
    b' '
}

/// True for bytes that can sit on either side of an arithmetic operator.
fn is_operand(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b')' || b == b'(' || b == b'.'
}

/// Inspects a line that starts with a word at `i`: `1.`, `2)`, `IV.`, `A.`, `(B)`.
fn line_start_marker(bytes: &[u8], i: usize, c: &mut Counts) {
    let rest = &bytes[i..];
    let paren_before = i > 0 && bytes[i - 1] == b'(';
    let mut j = 0;
    while j < rest.len() && j < 4 && rest[j].is_ascii_digit() {
        j += 1;
    }
    let after = |k: usize| rest.get(k).copied().unwrap_or(b' ');
    if j > 0 {
        if matches!(after(j), b'.' | b')' | b':') && matches!(after(j + 1), b' ' | b'\t') {
            c.items += 1;
        }
        return;
    }
    // Option letters A-E followed by '.' or ')' and a space, or "(A)".
    let first = after(0);
    if matches!(first, b'A'..=b'E' | b'a'..=b'e')
        && ((matches!(after(1), b'.' | b')') && matches!(after(2), b' ' | b'\t'))
            || (paren_before && after(1) == b')'))
    {
        c.options += 1;
        return;
    }
    // Roman numerals I..VIII followed by '.' or ')': enumerated statements.
    let mut k = 0;
    while k < rest.len() && k < 4 && matches!(rest[k], b'I' | b'V') {
        k += 1;
    }
    if k > 0 && matches!(after(k), b'.' | b')') && matches!(after(k + 1), b' ' | b'\t') {
        c.items += 1;
    }
}

/// snake_case (inner underscore) or camelCase (lowercase then uppercase) words, but not
/// acronyms (DNA) or names (McDonald is the rare false positive).
fn is_identifier(raw: &[u8]) -> bool {
    raw.len() > 2
        && raw.windows(2).any(|p| {
            (p[1] == b'_' && p[0] != b'_')
                || (p[0].is_ascii_lowercase() && p[1].is_ascii_uppercase())
        })
}

/// Updates the counts with one word (`raw` as written; `ascii` if it has no 2-byte chars).
fn finish_word(raw: &[u8], ascii: bool, c: &mut Counts, prev: &mut PrevWord) {
    c.words += 1;
    let prev_numeric = prev.numeric;
    let prev_enumerator = prev.enumerator;
    prev.enumerator = false;
    if !ascii {
        // Characters, not bytes; a word with a 2-byte character is neither a number nor
        // a keyword.
        let chars = raw.iter().filter(|&&x| (x & 0xC0) != 0x80).count();
        if chars >= 9 {
            c.long_words += 1;
        }
        prev.numeric = false;
        prev.len = 0;
        return;
    }
    // One pass over the word (bytes are ASCII letters, digits and `_` here): lowercase
    // copy of the first WORD_BUF bytes, largest byte (all digits iff it is <= '9'), and
    // whether any byte is in 'A'..='_' (upper case or `_`), without which the word cannot
    // be a snake_case or camelCase identifier.
    let len = raw.len();
    let mut buf = [0u8; WORD_BUF];
    let mut max = 0u8;
    let mut upper_or_underscore = false;
    for (k, &x) in raw.iter().enumerate() {
        max = max.max(x);
        upper_or_underscore |= x.wrapping_sub(b'A') <= b'_' - b'A';
        if k < WORD_BUF {
            buf[k] = x.to_ascii_lowercase();
        }
    }
    let all_digits = max <= b'9';
    let identifier = upper_or_underscore && is_identifier(raw);
    if len >= 9 && !all_digits {
        c.long_words += 1;
    }
    prev.numeric = all_digits;
    if len > WORD_BUF {
        prev.len = 0;
        if identifier {
            c.identifiers += 1;
        }
        return; // longer than any keyword
    }
    if all_digits {
        c.numbers += 1;
        if prev_enumerator {
            c.items += 1;
        }
        prev.len = 0;
        return;
    }
    if identifier {
        c.identifiers += 1;
    }
    let w = &buf[..len];
    let mut flags = keyword_flags(w) | phrase_flags(&prev.buf[..prev.len], w);
    if prev_numeric && is_unit_constraint(w) {
        flags |= CONSTRAINT;
    }
    prev.enumerator = is_enumerator(w);
    prev.buf = buf;
    prev.len = len;
    if flags == 0 {
        return;
    }
    let add = |bit: u16| usize::from(flags & bit != 0);
    c.reason += add(REASON);
    c.compare += add(COMPARE);
    c.code_words += add(CODE);
    c.math_words += add(MATH);
    c.sequence += add(SEQUENCE);
    c.constraint += add(CONSTRAINT);
    c.creative += add(CREATIVE);
    c.tech += add(TECH);
    c.simple += add(SIMPLE);
}

fn features_from_counts(c: &Counts, chars: usize) -> Features {
    // About 4 characters per token for alphabetic scripts, one token per wide character.
    let narrow = chars.saturating_sub(c.wide_chars) as f64;
    let tokens = narrow / 4.0 + c.wide_chars as f64;
    let length = ((1.0 + tokens).ln() / (1.0 + 2048.0f64).ln()).min(1.0);

    let code_points = 3.0 * c.fences as f64
        + c.code_words as f64
        + 0.5 * c.code_symbols as f64
        + 0.5 * c.identifiers as f64;
    let math_points = c.math_words as f64
        + 0.5 * c.numbers as f64
        + c.operators as f64
        + 0.5 * c.money_percent as f64;
    let multi_points = c.items as f64 + c.sequence as f64 + c.questions.saturating_sub(1) as f64;
    let vocabulary = if c.words == 0 {
        0.0
    } else {
        (c.long_words as f64 / c.words as f64 / 0.3).min(1.0)
    };
    // A short request with no cue of reasoning, code, maths, comparison, specialist terms
    // or structure ("Who wrote Hamlet?") counts as one trivial cue.
    let short_plain = c.words <= 12
        && c.reason + c.compare + c.code_words + c.fences + c.math_words + c.tech + c.items == 0;
    let simple = c.simple + usize::from(short_plain && c.words > 0);
    let multiple_choice = if c.options >= 2 {
        (c.options as f64 / 4.0).min(1.0)
    } else {
        0.0
    };

    Features {
        length,
        reasoning: saturate(c.reason as f64, 1.5),
        comparison: saturate(c.compare as f64, 1.0),
        code: saturate(code_points, 4.0),
        math: saturate(math_points, 4.0),
        multi_part: saturate(multi_points, 2.0),
        constraints: saturate(c.constraint as f64, 1.5),
        creative: saturate(c.creative as f64, 1.0),
        technical: saturate(c.tech as f64, 2.0),
        vocabulary,
        multiple_choice,
        simple: saturate(simple as f64, 1.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feature(text: &str, name: &str) -> f64 {
        let f = extract_features(text);
        let i = FEATURE_NAMES.iter().position(|n| *n == name).unwrap();
        f.values()[i]
    }

    #[test]
    fn keyword_table_is_sorted_lowercase_and_reachable() {
        for (stem, _) in KEYWORDS {
            assert!(stem.len() >= 2 && stem.len() <= 16);
            assert!(
                stem.iter().all(|b| b.is_ascii_lowercase()),
                "{:?}",
                std::str::from_utf8(stem)
            );
        }
        for pair in KEYWORDS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "not sorted: {:?}", pair[1].0);
        }
        assert_eq!(BUCKETS[26 * 26] as usize, STEMS_LEN);
        for (stem, flags) in KEYWORDS {
            assert_eq!(keyword_flags(stem), flags & !EXACT, "{stem:?}");
        }
    }

    #[test]
    fn deterministic_and_in_range() {
        let texts = [
            "",
            "hi",
            "Prove that there are infinitely many primes.",
            "```rust\nfn main() { println!(\"x\"); }\n```",
        ];
        for t in texts {
            let a = score(t);
            let b = score(t);
            assert_eq!(a, b);
            assert!((0.0..=1.0).contains(&a.score), "{t}: {}", a.score);
            for f in &a.features {
                assert!((0.0..=1.0).contains(&f.value), "{t}: {f:?}");
            }
            assert_eq!(a.features.len(), FEATURE_COUNT);
        }
    }

    #[test]
    fn contributions_sum_to_score_when_not_clamped() {
        let w = Weights::default();
        let s = score_with("Explain why the sky is blue, step by step.", &w);
        let sum: f64 = w.bias + s.features.iter().map(|f| f.contribution).sum::<f64>();
        assert!(sum > 0.0 && sum < 1.0, "{sum}");
        assert!((sum - s.score).abs() < 1e-12);
        for (f, wt) in s.features.iter().zip(w.feature_weights()) {
            assert!((f.contribution - wt * f.value).abs() < 1e-12);
        }
    }

    #[test]
    fn clamps_to_unit_interval() {
        let mut w = Weights {
            bias: 5.0,
            ..Weights::default()
        };
        assert_eq!(score_with("x", &w).score, 1.0);
        w.bias = -5.0;
        assert_eq!(score_with("x", &w).score, 0.0);
        w.bias = f64::NAN;
        assert_eq!(score_with("x", &w).score, 0.0);
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        let huge = "why ".repeat(100_000);
        let inputs = [
            String::new(),
            "é".repeat(3),
            "日本語のテキストを説明してください".to_string(),
            "🦀🦀🦀 emoji ```".to_string(),
            "a\u{0}b\u{7f}".to_string(),
            "x".repeat(200),
            "1.".to_string(),
            "(".to_string(),
            "=".to_string(),
            "-".to_string(),
            "`".to_string(),
            "``".to_string(),
            "\u{2022}".to_string(),
            "A.".to_string(),
            huge,
        ];
        for t in &inputs {
            let s = score(t);
            assert!((0.0..=1.0).contains(&s.score));
        }
        assert_eq!(feature(&"why ".repeat(100_000), "length"), 1.0);
    }

    #[test]
    fn wide_characters_count_as_tokens() {
        let cjk = "说".repeat(100);
        let latin = "a".repeat(100);
        assert!(feature(&cjk, "length") > feature(&latin, "length"));
    }

    #[test]
    fn each_feature_fires_on_an_example() {
        let cases = [
            ("length", "word ".repeat(400)),
            (
                "reasoning",
                "Explain why this holds and prove it step by step.".into(),
            ),
            (
                "comparison",
                "Compare Rust versus Go: pros and cons.".into(),
            ),
            ("code", "```python\ndef f(x):\n    return x\n```".into()),
            (
                "math",
                "Solve 3x + 5 = 20 and calculate the integral.".into(),
            ),
            (
                "multi_part",
                "1. Do this\n2. Do that\n- and then more?\nOk?".into(),
            ),
            (
                "constraints",
                "Answer in exactly 50 words, no more than that.".into(),
            ),
            ("creative", "Write a poem and a short story.".into()),
            (
                "technical",
                "The plaintiff sued the defendant for negligence.".into(),
            ),
            (
                "vocabulary",
                "Photosynthesis characteristics notwithstanding".into(),
            ),
            (
                "multiple_choice",
                "Pick one.\nA. one\nB. two\nC. three\nD. four\nAnswer:".into(),
            ),
            ("multiple_choice", "Pick one.\n(A) one\n(B) two".into()),
            ("simple", "Hi! Thanks.".into()),
        ];
        assert_eq!(cases.len(), FEATURE_COUNT + 1);
        for (name, text) in &cases {
            assert!(feature(text, name) > 0.0, "{name} did not fire on {text:?}");
        }
        assert_eq!(feature("the cat sat on the mat", "reasoning"), 0.0);
        assert_eq!(feature("the cat sat on the mat", "code"), 0.0);
        assert_eq!(feature("the cat sat on the mat", "multiple_choice"), 0.0);
        assert!(feature("Who wrote Hamlet?", "simple") > 0.0);
        assert_eq!(feature("Why did Hamlet hesitate?", "simple"), 0.0);
    }

    #[test]
    fn stems_and_exact_words() {
        assert_ne!(keyword_flags(b"explanation") & REASON, 0);
        assert_ne!(keyword_flags(b"analyses") & REASON, 0);
        assert_ne!(keyword_flags(b"analyzing") & REASON, 0);
        assert_eq!(keyword_flags(b"analyst") & REASON, 0);
        assert_eq!(keyword_flags(b"whyever") & REASON, 0);
        assert_ne!(keyword_flags(b"why") & REASON, 0);
        assert_eq!(keyword_flags(b"defer") & CODE, 0);
        assert_eq!(keyword_flags(b""), 0);
        assert_eq!(keyword_flags(b"9lives"), 0);
    }

    #[test]
    fn harder_prompts_score_higher() {
        let easy = score("Hi, how are you?").score;
        let hard = score(
            "Prove step by step that the sum of the first n odd numbers is n^2, then explain \
             why the argument generalizes, and compare induction versus a direct proof.",
        )
        .score;
        assert!(hard > easy, "{hard} <= {easy}");
    }
}
