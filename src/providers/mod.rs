//! Upstream providers: one file per provider with the same shape (build the request,
//! parse the response, classify errors), and the one `fetch` call kept in `http`.

pub mod http;
pub mod mistral;

/// Token counts reported by the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

/// A parsed, non-streaming chat completion.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatCompletion {
    /// Text of the first choice.
    pub answer: String,
    /// Model id the upstream reports (the dated id an alias resolved to).
    pub model: String,
    /// Usage, when the upstream sent it.
    pub usage: Option<Usage>,
    /// The first choice's finish reason.
    pub finish_reason: Option<String>,
}

/// Rough token estimate (~4 characters per token) for when an upstream omits usage.
pub fn estimate_tokens(text: &str) -> u64 {
    let chars = text.chars().count() as u64;
    chars.div_ceil(4).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_about_four_chars_per_token() {
        assert_eq!(estimate_tokens(""), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
        assert_eq!(estimate_tokens("ééééé"), 2);
    }
}
