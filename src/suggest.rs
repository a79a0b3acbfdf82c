//! "Did you mean": the closest known word to a misspelt one, for the hints of every error
//! that names a key, a strategy, a variable or an environment. A floor of its own, below the
//! config and the policy modules that both give such hints.

/// The closest of `options` to `word`, when it is close enough to be the likely intent.
pub fn suggest<'a>(word: &str, options: &[&'a str]) -> Option<&'a str> {
    options
        .iter()
        .map(|o| (strsim::jaro_winkler(word, o), *o))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| o)
}
