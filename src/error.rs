//! Errors that are the user's to fix (bad input): they exit with status 2.

/// A bad input: an unknown name, a malformed plan, an unusable path. The message
/// names the file, field or value and what would be accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

/// Build an `anyhow::Error` that exits with status 2.
pub fn user(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UserError(msg.into()))
}

/// Exit status for an error: 2 for bad input, 1 otherwise.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    if err.chain().any(|e| e.downcast_ref::<UserError>().is_some()) {
        2
    } else {
        1
    }
}
