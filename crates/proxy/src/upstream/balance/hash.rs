//! Consistent hashing by weighted rendezvous (highest random weight): every server scores the key with
//! its own seed, and the best score wins. Adding a server moves only the keys it now wins (about 1/N),
//! a server going DOWN spreads only its own keys over the others, and no ring has to be rebuilt.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The seed a server scores keys with: from its name, so that keys stay put when addresses change.
pub(crate) fn server_seed(name: &str) -> u64 {
    xxh3_64_with_seed(name.as_bytes(), 0x7170_726f_7879)
}

/// The winning server among those `usable` for `key`, given their seeds and weights.
pub(crate) fn pick(
    key: &[u8],
    seeds: &[u64],
    weights: &[u32],
    usable: impl Fn(usize) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, (seed, weight)) in seeds.iter().zip(weights).enumerate() {
        if !usable(i) {
            continue;
        }
        // A uniform draw in (0, 1) from the hash, then the weighted score w / -ln(u): the winner is
        // distributed in proportion to the weights.
        let u = ((xxh3_64_with_seed(key, *seed) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(*weight) / -u.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(n: usize) -> Vec<u64> {
        (0..n).map(|i| server_seed(&format!("s{i}"))).collect()
    }

    fn owners(n: usize, keys: usize) -> Vec<usize> {
        let (seeds, weights) = (seeds(n), vec![1; n]);
        (0..keys)
            .map(|k| pick(format!("/item/{k}").as_bytes(), &seeds, &weights, |_| true).unwrap())
            .collect()
    }

    #[test]
    fn a_key_stays_on_one_server() {
        let (seeds, weights) = (seeds(4), vec![1; 4]);
        let first = pick(b"/a", &seeds, &weights, |_| true);
        assert!((0..100).all(|_| pick(b"/a", &seeds, &weights, |_| true) == first));
    }

    #[test]
    fn adding_a_server_moves_about_one_nth_of_the_keys() {
        for n in [2, 3, 5, 8] {
            let keys = 20_000;
            let before = owners(n, keys);
            let after = owners(n + 1, keys);
            let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
            // Only to the new server, and no more than 1/(N+1) + 5 %.
            assert!(before.iter().zip(&after).all(|(b, a)| b == a || *a == n));
            let share = moved as f64 / keys as f64;
            assert!(share <= 1.0 / (n + 1) as f64 + 0.05, "n={n}: {share}");
            assert!(share >= 1.0 / (n + 1) as f64 - 0.05, "n={n}: {share}");
        }
    }

    #[test]
    fn a_down_server_hands_over_only_its_own_keys_and_weights_hold() {
        let keys = 30_000;
        let (seeds, weights) = (seeds(3), vec![1, 2, 3]);
        let all: Vec<usize> = (0..keys)
            .map(|k| pick(&(k as u64).to_le_bytes(), &seeds, &weights, |_| true).unwrap())
            .collect();
        for (s, w) in [(0, 1.0), (1, 2.0), (2, 3.0)] {
            let share = all.iter().filter(|o| **o == s).count() as f64 / keys as f64;
            assert!((share - w / 6.0).abs() < 0.02, "server {s}: {share}");
        }
        for (k, owner) in all.iter().enumerate() {
            let without_1 = pick(&(k as u64).to_le_bytes(), &seeds, &weights, |i| i != 1).unwrap();
            assert!(*owner == 1 || without_1 == *owner);
        }
        assert_eq!(pick(b"k", &seeds, &weights, |_| false), None);
    }
}
