//! Values kept per image and environment: a map from alias to a short vector of environments,
//! sorted by name.
//!
//! Most images have one to three environments. A map per image would allocate a B-tree node
//! (room for eleven entries) for them, and a map keyed by the (alias, environment) pair would
//! allocate both names at every lookup. The status store and the metrics use this form.

use std::collections::BTreeMap;

pub type ByImage<T> = BTreeMap<Box<str>, Vec<(Box<str>, T)>>;

/// The value of `alias` in `environment`, made with `Default` on first use. The names are
/// allocated only then, and a vector grows by exactly one: its first growth would otherwise
/// make room for four.
pub fn entry<'a, T: Default>(map: &'a mut ByImage<T>, alias: &str, environment: &str) -> &'a mut T {
    if !map.contains_key(alias) {
        map.insert(alias.into(), Vec::new());
    }
    let envs = map.get_mut(alias).expect("made above");
    let at = match envs.binary_search_by(|(e, _)| (**e).cmp(environment)) {
        Ok(at) => at,
        Err(at) => {
            envs.reserve_exact(1);
            envs.insert(at, (environment.into(), T::default()));
            at
        }
    };
    &mut envs[at].1
}

/// The value of `alias` in `environment`, if one was made.
pub fn get<'a, T>(map: &'a ByImage<T>, alias: &str, environment: &str) -> Option<&'a T> {
    let envs = map.get(alias)?;
    let at = envs
        .binary_search_by(|(e, _)| (**e).cmp(environment))
        .ok()?;
    Some(&envs[at].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_are_found_in_any_order_and_kept_exactly() {
        let mut map: ByImage<u32> = ByImage::new();
        *entry(&mut map, "api", "prod") += 1;
        *entry(&mut map, "api", "dev") += 2;
        *entry(&mut map, "api", "staging") += 3;
        *entry(&mut map, "api", "prod") += 10;
        assert_eq!(get(&map, "api", "prod"), Some(&11));
        assert_eq!(get(&map, "api", "dev"), Some(&2));
        assert_eq!(get(&map, "api", "qa"), None);
        assert_eq!(get(&map, "web", "prod"), None);
        let envs = &map["api"];
        let names: Vec<&str> = envs.iter().map(|(e, _)| &**e).collect();
        assert_eq!(names, ["dev", "prod", "staging"]);
        assert_eq!(envs.capacity(), 3);
    }
}
