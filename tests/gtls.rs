//! Reading what ngtcp2's `gtlsclient` printed: the `:status` of every response.

/// The statuses of the responses in `output`, in order (0 for one that does not parse).
pub fn statuses(output: &str) -> Vec<u16> {
    output
        .lines()
        .filter_map(|l| l.split_once("[:status: "))
        .map(|(_, rest)| rest.trim_end_matches(']').trim().parse().unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_are_read_in_order() {
        let out = "x\n[ 0.1] [:status: 200]\ny [:status: 503]\n";
        assert_eq!(super::statuses(out), vec![200, 503]);
    }
}
