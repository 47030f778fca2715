//! The audit module owns the memorization audits of a trained model against its corpus. So far: the
//! exact verbatim-regurgitation matcher ([`ngram`]); extraction, canary exposure, secret and PII scans and
//! membership inference join it with the audit issue.

pub mod ngram;
