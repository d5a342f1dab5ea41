//! Smooth weighted round robin (as nginx does it): each pick adds every server's weight to its current
//! score, takes the highest, and subtracts the total from it. Picks interleave (a,a,b with 2:1 gives
//! a,b,a), and over W picks each server gets exactly its weight.

/// Round-robin state of one backend.
#[derive(Debug, Clone)]
pub struct RoundRobin {
    weights: Vec<i64>,
    current: Vec<i64>,
}

impl RoundRobin {
    /// For servers with these weights.
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = vec![0; weights.len()];
        RoundRobin { weights, current }
    }

    /// The next server's index, or `None` without servers.
    pub fn pick(&mut self) -> Option<usize> {
        let total: i64 = self.weights.iter().sum();
        if total == 0 {
            return None;
        }
        for (c, w) in self.current.iter_mut().zip(&self.weights) {
            *c += w;
        }
        let (best, _) = self
            .current
            .iter()
            .enumerate()
            .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_honoured_exactly_and_smoothly() {
        let mut rr = RoundRobin::new([1, 2, 3]);
        let picks: Vec<usize> = (0..6000).map(|_| rr.pick().unwrap()).collect();
        let count = |s| picks.iter().filter(|p| **p == s).count();
        assert_eq!((count(0), count(1), count(2)), (1000, 2000, 3000));
        let mut rr = RoundRobin::new([2, 1]);
        assert_eq!(
            (0..3).map(|_| rr.pick().unwrap()).collect::<Vec<_>>(),
            vec![0, 1, 0]
        );
        assert_eq!(RoundRobin::new([]).pick(), None);
    }
}
