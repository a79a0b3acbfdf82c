//! Reading an HTTP answer's body up to a limit: a body announced larger than the limit is
//! refused before a byte is read, and one that grows past it is refused as soon as it does.
//! Registries, forges, clouds' token services and chart repositories are all read through
//! this, each with its own limit and its own words for the two ways it can fail.

/// Why a body was not read whole.
#[derive(Debug)]
pub enum BodyError {
    /// It is, or was announced, larger than the limit.
    TooLarge,
    /// The connection failed while it was read (a timeout, a reset, a body cut short).
    Transport(reqwest::Error),
}

/// The body of `response`, when it is at most `limit` bytes.
pub async fn read(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let announced = response
        .content_length()
        .is_some_and(|n| usize::try_from(n).map_or(true, |n| n > limit));
    if announced {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len().saturating_add(chunk.len()) > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
