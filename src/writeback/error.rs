//! How a git operation fails, apart from the code that runs it: the mirror and the commit
//! signer both report in it, and neither needs the other to say so.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    /// A git command failed; the text is git's own message, with any credentials removed.
    #[error("git {command}: {message}")]
    Command { command: String, message: String },
    /// The repository's credentials could not be read.
    #[error("{0}")]
    Credentials(String),
    /// The object database or refs could not be read or written.
    #[error("repository {0}")]
    Repository(String),
    /// A target path is unusable in this tree (a symlink, a directory, a submodule).
    #[error("{path}: {reason}")]
    Path { path: String, reason: String },
}
