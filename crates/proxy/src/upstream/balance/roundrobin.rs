//! Smooth weighted round robin (as nginx does it): each pick adds every usable server's weight to its
//! current score, takes the highest, and subtracts the usable total from it. Picks interleave (a,a,b with
//! 2:1 gives a,b,a), and over W picks each server gets exactly its weight while the usable set holds.

/// Round-robin state of one backend.
#[derive(Debug, Clone)]
pub(crate) struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    /// For `servers` servers.
    pub(crate) fn new(servers: usize) -> Self {
        RoundRobin {
            current: vec![0; servers],
        }
    }

    /// The next server among those `usable`, given their weights.
    pub(crate) fn pick(&mut self, weights: &[u32], usable: impl Fn(usize) -> bool) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, (c, w)) in self.current.iter_mut().zip(weights).enumerate() {
            if !usable(i) {
                continue;
            }
            *c += i64::from(*w);
            total += i64::from(*w);
            if best.is_none_or(|(_, score)| *c > score) {
                best = Some((i, *c));
            }
        }
        let (best, _) = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_honoured_exactly_and_smoothly() {
        let mut rr = RoundRobin::new(3);
        let picks: Vec<usize> = (0..6000)
            .map(|_| rr.pick(&[1, 2, 3], |_| true).unwrap())
            .collect();
        let count = |s| picks.iter().filter(|p| **p == s).count();
        assert_eq!((count(0), count(1), count(2)), (1000, 2000, 3000));
        let mut rr = RoundRobin::new(2);
        let picks: Vec<usize> = (0..3).map(|_| rr.pick(&[2, 1], |_| true).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 0]);
        assert_eq!(RoundRobin::new(0).pick(&[], |_| true), None);
    }

    #[test]
    fn unusable_servers_are_skipped_and_the_rest_keep_their_ratio() {
        let mut rr = RoundRobin::new(3);
        let picks: Vec<usize> = (0..400)
            .map(|_| rr.pick(&[1, 5, 3], |i| i != 1).unwrap())
            .collect();
        assert!(!picks.contains(&1));
        assert_eq!(picks.iter().filter(|p| **p == 2).count(), 300);
        assert_eq!(rr.pick(&[1, 1, 1], |_| false), None);
    }
}
