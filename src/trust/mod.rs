//! Key material, parsed: cosign public keys and Sigstore trusted roots. A floor below both the
//! config, which checks the files it names when it is loaded, and [`crate::verify`], which
//! checks signatures with them; it reads nothing from the network and knows neither.

pub mod keys;
pub mod trusted_root;
