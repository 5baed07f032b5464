//! The upstream call's policy: attempts, retries, backoff and the deadline, behind a small
//! seam ([`Upstream`]) that sends one attempt and sleeps.
//!
//! This module owns what to retry (rate limits, server errors, network failures; never
//! another 4xx, never a timeout, never once a 2xx answer's body has started: the upstream
//! has billed it by then), how long to wait
//! (`Retry-After` in whole seconds when it fits, else exponential backoff from 200 ms), and
//! that all attempts together stay within `UPSTREAM_TIMEOUT_MS`. It must not do I/O or
//! read a clock itself: the worker implements [`Upstream`] with the runtime's `fetch` and
//! timers, native tests with a scripted fake (`tests` below), so the policy is tested
//! without a network.

use crate::error::GatewayError;
use crate::providers::{is_retryable, retry_delay_ms, sanitise, unreachable_cause, Provider};

/// Attempts per call: the first try plus one retry of a rate limit or server error.
pub const MAX_ATTEMPTS: u32 = 2;

/// One upstream request, as the plan built it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest<'a> {
    /// Endpoint URL.
    pub url: &'a str,
    /// Headers, authentication included (`content-type` and `accept` are added by the
    /// sender).
    pub headers: Vec<(&'static str, String)>,
    /// JSON body.
    pub body: Vec<u8>,
    /// Whether the answer is streamed (then the deadline covers the headers only).
    pub stream: bool,
    /// Largest answer body read (MAX_UPSTREAM_RESPONSE_BYTES); the sender stops reading
    /// past it and reports [`AttemptError::TooLarge`].
    pub max_response_bytes: usize,
}

/// A successful (2xx) answer.
#[derive(Debug)]
pub enum Answer<S> {
    /// The whole body (non-streaming).
    Whole(Vec<u8>),
    /// The response, body unread (streaming).
    Stream(S),
}

/// What one attempt produced when the upstream answered at all.
#[derive(Debug)]
pub enum Reply<S> {
    /// A 2xx answer.
    Ok(Answer<S>),
    /// A non-2xx answer, its body read for the error classification.
    Failed {
        /// HTTP status.
        status: u16,
        /// The error body.
        body: Vec<u8>,
        /// The `Retry-After` header, if any.
        retry_after: Option<String>,
    },
}

/// Why an attempt got no (usable) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// The attempt's deadline passed before the answer's headers.
    Timeout,
    /// The connection failed before an answer (the runtime's message).
    Network(String),
    /// A 2xx answer's body broke off, or stalled past the deadline, after
    /// `received_bytes`. Never retried.
    Broken {
        /// Bytes of body read before it broke.
        received_bytes: usize,
        /// The deadline, not the connection, ended it.
        timed_out: bool,
    },
    /// A 2xx answer's body grew past `limit` bytes (MAX_UPSTREAM_RESPONSE_BYTES). Never
    /// retried.
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

/// The seam between the policy and the runtime: one attempt, a sleep, a clock.
///
/// Implementations only move bytes: they add no retries and no error classification.
#[allow(async_fn_in_trait)] // single-threaded (wasm); no Send bounds are needed
pub trait Upstream {
    /// A streamed response whose body is not read yet.
    type Stream;
    /// Sends `request` once and waits for the answer (the whole body, or the headers of a
    /// stream) for at most `timeout_ms`.
    async fn send(
        &self,
        request: &UpstreamRequest<'_>,
        timeout_ms: u64,
    ) -> Result<Reply<Self::Stream>, AttemptError>;
    /// Waits `ms` milliseconds.
    async fn sleep(&self, ms: u64);
    /// Milliseconds since some fixed point (only differences are used).
    fn now_ms(&self) -> u64;
}

/// How a call may spend its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    /// Deadline of the whole call, retries and waits included (`UPSTREAM_TIMEOUT_MS`).
    pub timeout_ms: u64,
    /// Attempts at most.
    pub max_attempts: u32,
}

impl CallPolicy {
    /// The default policy under a deadline.
    pub fn with_timeout(timeout_ms: u64) -> Self {
        Self {
            timeout_ms,
            max_attempts: MAX_ATTEMPTS,
        }
    }
}

/// Makes the call: attempts while the policy allows, then the answer or the classified
/// error (`provider` reads the upstream's error body; `secret` is scrubbed from whatever
/// reaches the client).
pub async fn call<U: Upstream>(
    upstream: &U,
    request: &UpstreamRequest<'_>,
    policy: CallPolicy,
    provider: &dyn Provider,
    secret: &str,
) -> Result<Answer<U::Stream>, GatewayError> {
    let timeout_ms = policy.timeout_ms;
    let started = upstream.now_ms();
    let remaining =
        |upstream: &U| timeout_ms.saturating_sub(upstream.now_ms().saturating_sub(started));
    let mut attempt = 1;
    loop {
        let budget = remaining(upstream);
        if budget == 0 {
            return Err(GatewayError::UpstreamTimeout { timeout_ms });
        }
        let outcome = upstream.send(request, budget).await;
        let (retryable, retry_after) = match &outcome {
            Ok(Reply::Failed {
                status,
                retry_after,
                ..
            }) => (is_retryable(*status), retry_after.as_deref()),
            Ok(Reply::Ok(_))
            | Err(AttemptError::Timeout)
            | Err(AttemptError::Broken { .. })
            | Err(AttemptError::TooLarge { .. }) => (false, None),
            Err(AttemptError::Network(_)) => (true, None),
        };
        if retryable && attempt < policy.max_attempts {
            if let Some(delay) = retry_delay_ms(attempt, retry_after, remaining(upstream)) {
                upstream.sleep(delay).await;
                attempt += 1;
                continue;
            }
        }
        return match outcome {
            Ok(Reply::Ok(answer)) => Ok(answer),
            Ok(Reply::Failed {
                status,
                body,
                retry_after,
            }) => Err(provider.classify_error(status, &body, retry_after, secret)),
            Err(AttemptError::Timeout) => Err(GatewayError::UpstreamTimeout { timeout_ms }),
            Err(AttemptError::Network(message)) => Err(GatewayError::UpstreamUnreachable {
                cause: unreachable_cause(&sanitise(&message, secret)),
            }),
            Err(AttemptError::Broken {
                received_bytes,
                timed_out,
            }) => Err(GatewayError::UpstreamBroken {
                received_bytes,
                timed_out,
            }),
            Err(AttemptError::TooLarge { limit }) => Err(GatewayError::UpstreamTooLarge { limit }),
        };
    }
}

/// Runs a future that never waits on anything outside itself (the scripted fake below, or
/// any pure async code) to completion on the current thread. For native tests and tools.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::BackendKind;
    use std::cell::{Cell, RefCell};
    use std::collections::VecDeque;

    /// One scripted attempt: how long it takes and how it ends.
    enum Step {
        Answer(u64, u16, &'static str, Option<&'static str>),
        Stream(u64),
        Timeout,
        Network(u64, &'static str),
    }

    /// A fake upstream on a virtual clock: attempts follow the script, sleeps advance time.
    struct Scripted {
        script: RefCell<VecDeque<Step>>,
        clock: Cell<u64>,
        sent: RefCell<Vec<(u64, u64)>>,
        slept: RefCell<Vec<u64>>,
    }

    impl Scripted {
        fn new(script: Vec<Step>) -> Self {
            Self {
                script: RefCell::new(script.into()),
                clock: Cell::new(1_000_000),
                sent: RefCell::new(Vec::new()),
                slept: RefCell::new(Vec::new()),
            }
        }
        fn attempts(&self) -> usize {
            self.sent.borrow().len()
        }
        fn elapsed(&self) -> u64 {
            self.clock.get() - 1_000_000
        }
    }

    impl Upstream for Scripted {
        type Stream = &'static str;

        async fn send(
            &self,
            _request: &UpstreamRequest<'_>,
            timeout_ms: u64,
        ) -> Result<Reply<&'static str>, AttemptError> {
            self.sent.borrow_mut().push((self.elapsed(), timeout_ms));
            let step = self
                .script
                .borrow_mut()
                .pop_front()
                .expect("script too short");
            let advance = |ms: u64| {
                if ms >= timeout_ms {
                    self.clock.set(self.clock.get() + timeout_ms);
                    Err(AttemptError::Timeout)
                } else {
                    self.clock.set(self.clock.get() + ms);
                    Ok(())
                }
            };
            match step {
                Step::Answer(ms, status, body, retry_after) => {
                    advance(ms)?;
                    if (200..300).contains(&status) {
                        Ok(Reply::Ok(Answer::Whole(body.as_bytes().to_vec())))
                    } else {
                        Ok(Reply::Failed {
                            status,
                            body: body.as_bytes().to_vec(),
                            retry_after: retry_after.map(str::to_string),
                        })
                    }
                }
                Step::Stream(ms) => {
                    advance(ms)?;
                    Ok(Reply::Ok(Answer::Stream("stream")))
                }
                Step::Timeout => {
                    self.clock.set(self.clock.get() + timeout_ms);
                    Err(AttemptError::Timeout)
                }
                Step::Network(ms, message) => {
                    advance(ms)?;
                    Err(AttemptError::Network(message.to_string()))
                }
            }
        }

        async fn sleep(&self, ms: u64) {
            self.slept.borrow_mut().push(ms);
            self.clock.set(self.clock.get() + ms);
        }

        fn now_ms(&self) -> u64 {
            self.clock.get()
        }
    }

    fn request() -> UpstreamRequest<'static> {
        UpstreamRequest {
            url: "https://upstream.test/v1/chat/completions",
            headers: vec![("authorization", "Bearer sk-secret".into())],
            body: b"{}".to_vec(),
            stream: false,
            max_response_bytes: 1 << 20,
        }
    }

    fn run(fake: &Scripted, timeout_ms: u64) -> Result<Answer<&'static str>, GatewayError> {
        block_on(call(
            fake,
            &request(),
            CallPolicy::with_timeout(timeout_ms),
            BackendKind::Mistral.provider(),
            "sk-secret",
        ))
    }

    fn whole(answer: Result<Answer<&'static str>, GatewayError>) -> Vec<u8> {
        match answer {
            Ok(Answer::Whole(bytes)) => bytes,
            other => panic!("expected a whole answer, got {other:?}"),
        }
    }

    #[test]
    fn a_success_is_one_attempt() {
        let fake = Scripted::new(vec![Step::Answer(30, 200, "{\"ok\":1}", None)]);
        assert_eq!(whole(run(&fake, 5_000)), b"{\"ok\":1}");
        assert_eq!(fake.attempts(), 1);
        assert_eq!(*fake.sent.borrow(), vec![(0, 5_000)]);
        assert!(fake.slept.borrow().is_empty());
    }

    #[test]
    fn a_rate_limit_is_retried_after_its_retry_after() {
        let fake = Scripted::new(vec![
            Step::Answer(10, 429, r#"{"message":"slow down"}"#, Some("2")),
            Step::Answer(10, 200, "done", None),
        ]);
        assert_eq!(whole(run(&fake, 10_000)), b"done");
        assert_eq!(*fake.slept.borrow(), vec![2_000]);
        // The second attempt gets what is left of the deadline.
        assert_eq!(*fake.sent.borrow(), vec![(0, 10_000), (2_010, 7_990)]);
    }

    #[test]
    fn a_retry_after_longer_than_the_deadline_is_not_waited_for() {
        let fake = Scripted::new(vec![Step::Answer(
            10,
            429,
            r#"{"message":"slow down"}"#,
            Some("30"),
        )]);
        let error = run(&fake, 10_000).unwrap_err();
        assert_eq!(fake.attempts(), 1);
        assert!(fake.slept.borrow().is_empty());
        assert!(matches!(
            error,
            GatewayError::Upstream { status: Some(429), ref retry_after, ref message }
                if retry_after.as_deref() == Some("30") && message == "slow down"
        ));
    }

    #[test]
    fn server_errors_are_retried_once_with_backoff_then_reported() {
        let fake = Scripted::new(vec![
            Step::Answer(5, 503, "unavailable", None),
            Step::Answer(5, 500, "Internal Server Error", None),
        ]);
        let error = run(&fake, 10_000).unwrap_err();
        assert_eq!(fake.attempts(), 2, "two attempts, no more");
        assert_eq!(*fake.slept.borrow(), vec![200]);
        assert_eq!(
            error,
            GatewayError::Upstream {
                status: Some(500),
                message: "upstream server error".into(),
                retry_after: None,
            }
        );
    }

    #[test]
    fn client_errors_other_than_429_are_never_retried() {
        for status in [400, 401, 403, 404, 422] {
            let fake = Scripted::new(vec![Step::Answer(5, status, "{}", None)]);
            let error = run(&fake, 10_000).unwrap_err();
            assert_eq!(fake.attempts(), 1, "status {status}");
            assert!(matches!(error, GatewayError::Upstream { status: Some(s), .. } if s == status));
        }
    }

    #[test]
    fn a_timeout_is_not_retried_and_reports_the_deadline() {
        let fake = Scripted::new(vec![Step::Timeout]);
        assert_eq!(
            run(&fake, 3_000).unwrap_err(),
            GatewayError::UpstreamTimeout { timeout_ms: 3_000 }
        );
        assert_eq!(fake.attempts(), 1);
        assert_eq!(fake.elapsed(), 3_000);
    }

    #[test]
    fn a_slow_answer_past_the_deadline_is_a_timeout() {
        let fake = Scripted::new(vec![Step::Answer(4_000, 200, "late", None)]);
        assert_eq!(
            run(&fake, 3_000).unwrap_err(),
            GatewayError::UpstreamTimeout { timeout_ms: 3_000 }
        );
    }

    #[test]
    fn network_failures_are_retried_and_the_secret_scrubbed() {
        let fake = Scripted::new(vec![
            Step::Network(1, "connection reset"),
            Step::Network(1, "connect to sk-secret@host refused"),
        ]);
        let error = run(&fake, 10_000).unwrap_err();
        assert_eq!(fake.attempts(), 2);
        match error {
            GatewayError::UpstreamUnreachable { cause } => {
                assert!(!cause.contains("sk-secret"), "{cause}");
                assert!(cause.contains("refused"), "{cause}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_broken_or_oversized_2xx_body_is_never_retried() {
        // The upstream billed a completion whose body broke: a retry would bill another.
        struct Broken(AttemptError, Cell<usize>);
        impl Upstream for Broken {
            type Stream = ();
            async fn send(
                &self,
                _: &UpstreamRequest<'_>,
                _: u64,
            ) -> Result<Reply<()>, AttemptError> {
                self.1.set(self.1.get() + 1);
                Err(self.0.clone())
            }
            async fn sleep(&self, _: u64) {}
            fn now_ms(&self) -> u64 {
                0
            }
        }
        let cases = [
            (
                AttemptError::Broken {
                    received_bytes: 120,
                    timed_out: false,
                },
                GatewayError::UpstreamBroken {
                    received_bytes: 120,
                    timed_out: false,
                },
            ),
            (
                AttemptError::TooLarge { limit: 8 },
                GatewayError::UpstreamTooLarge { limit: 8 },
            ),
        ];
        for (attempt_error, expected) in cases {
            let fake = Broken(attempt_error, Cell::new(0));
            let error = block_on(call(
                &fake,
                &request(),
                CallPolicy::with_timeout(10_000),
                BackendKind::OpenAi.provider(),
                "",
            ))
            .unwrap_err();
            assert_eq!(error, expected);
            assert_eq!(fake.1.get(), 1, "{expected:?}");
            assert_eq!(error.status(), 502);
        }
    }

    #[test]
    fn a_network_failure_then_success_answers() {
        let fake = Scripted::new(vec![
            Step::Network(1, "connection reset"),
            Step::Answer(1, 200, "ok", None),
        ]);
        assert_eq!(whole(run(&fake, 10_000)), b"ok");
        assert_eq!(*fake.slept.borrow(), vec![200]);
    }

    #[test]
    fn no_retry_when_the_backoff_would_overrun_the_deadline() {
        // 150 ms used of 300: a 200 ms backoff does not fit, so no second attempt.
        let fake = Scripted::new(vec![Step::Answer(150, 502, "bad gateway", None)]);
        let error = run(&fake, 300).unwrap_err();
        assert_eq!(fake.attempts(), 1);
        assert!(matches!(
            error,
            GatewayError::Upstream {
                status: Some(502),
                ..
            }
        ));
    }

    #[test]
    fn garbage_error_bodies_are_classified_by_status() {
        let fake = Scripted::new(vec![Step::Answer(1, 418, "\u{0}\u{1}not json", None)]);
        let error = run(&fake, 1_000).unwrap_err();
        assert_eq!(
            error,
            GatewayError::Upstream {
                status: Some(418),
                message: "unexpected status".into(),
                retry_after: None,
            }
        );
    }

    #[test]
    fn a_stream_is_handed_over_unread() {
        let fake = Scripted::new(vec![Step::Stream(20)]);
        let mut stream_request = request();
        stream_request.stream = true;
        let answer = block_on(call(
            &fake,
            &stream_request,
            CallPolicy::with_timeout(1_000),
            BackendKind::OpenAi.provider(),
            "",
        ));
        assert!(matches!(answer, Ok(Answer::Stream("stream"))));
    }

    #[test]
    fn a_spent_deadline_makes_no_attempt() {
        let fake = Scripted::new(vec![]);
        assert_eq!(
            run(&fake, 0).unwrap_err(),
            GatewayError::UpstreamTimeout { timeout_ms: 0 }
        );
        assert_eq!(fake.attempts(), 0);
    }

    #[test]
    fn more_attempts_when_the_policy_allows_them() {
        let fake = Scripted::new(vec![
            Step::Answer(1, 503, "", None),
            Step::Answer(1, 503, "", None),
            Step::Answer(1, 200, "third", None),
        ]);
        let policy = CallPolicy {
            timeout_ms: 10_000,
            max_attempts: 3,
        };
        let answer = block_on(call(
            &fake,
            &request(),
            policy,
            BackendKind::Mistral.provider(),
            "",
        ));
        assert_eq!(whole(answer), b"third");
        assert_eq!(*fake.slept.borrow(), vec![200, 400]);
    }
}
