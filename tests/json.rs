//! Reading the JSON-line output of the test clients (aioquic's `h3client.py`, `h3get`) with serde_json.

use serde_json::Value;

/// Every line of `output` that is a JSON object, parsed.
pub fn lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
        .collect()
}

/// `value[key]` as a number, if it is one.
pub fn u64_at(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}

/// `value[key]` as text, if it is text.
pub fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// `value[key]` is `true`.
pub fn is_true(value: &Value, key: &str) -> bool {
    value.get(key).and_then(Value::as_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_fields() {
        let out = "noise\n{\"status\": 200, \"error\": null, \"early_data\": true}\n[1]\n";
        let v = lines(out);
        assert_eq!(v.len(), 1);
        assert_eq!(u64_at(&v[0], "status"), Some(200));
        assert_eq!(str_at(&v[0], "error"), None);
        assert!(is_true(&v[0], "early_data"));
    }
}
