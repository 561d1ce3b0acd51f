//! A small JSON tree for documents built on hot paths (a slot's `detail`).
//!
//! `serde_json::Value` keeps objects in a `BTreeMap` with owned keys: building one per slot per
//! `cdc_health()` call and dropping it again was a fifth of the function's time. Here keys are
//! static and objects are short vectors; the extension encodes the tree straight into jsonb,
//! and `Value::from` gives the `serde_json` form where a document is kept or sent (alerts).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    /// Their order is free; of a repeated key the last value counts.
    Object(Vec<(&'static str, Json)>),
    /// Anything else, as serde_json has it.
    Value(Value),
}

impl Json {
    /// An object from its entries. A repeated key counts once, with its last value (as in
    /// jsonb and in `Value::from`); `insert` keeps keys unique.
    pub fn object<const N: usize>(entries: [(&'static str, Json); N]) -> Json {
        let mut object = Vec::with_capacity(N + 2);
        object.extend(entries);
        Json::Object(object)
    }

    /// Sets `key` of an object (replacing its value); does nothing to other kinds.
    pub fn insert(&mut self, key: &'static str, value: Json) {
        let Json::Object(entries) = self else { return };
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }
}

impl From<bool> for Json {
    fn from(b: bool) -> Self {
        Json::Bool(b)
    }
}

impl From<i64> for Json {
    fn from(i: i64) -> Self {
        Json::Int(i)
    }
}

impl From<i32> for Json {
    fn from(i: i32) -> Self {
        Json::Int(i64::from(i))
    }
}

impl From<u32> for Json {
    fn from(i: u32) -> Self {
        Json::Int(i64::from(i))
    }
}

impl From<u64> for Json {
    fn from(i: u64) -> Self {
        match i64::try_from(i) {
            Ok(i) => Json::Int(i),
            Err(_) => Json::Value(Value::from(i)),
        }
    }
}

impl From<f64> for Json {
    fn from(f: f64) -> Self {
        Json::Value(Value::from(f))
    }
}

impl From<String> for Json {
    fn from(s: String) -> Self {
        Json::Str(s)
    }
}

impl From<&str> for Json {
    fn from(s: &str) -> Self {
        Json::Str(s.to_string())
    }
}

impl From<Value> for Json {
    fn from(v: Value) -> Self {
        Json::Value(v)
    }
}

impl<T: Into<Json>> From<Option<T>> for Json {
    fn from(o: Option<T>) -> Self {
        o.map_or(Json::Null, Into::into)
    }
}

impl From<Json> for Value {
    fn from(j: Json) -> Self {
        match j {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(i) => Value::from(i),
            Json::Str(s) => Value::String(s),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Value::from(v)))
                    .collect(),
            ),
            Json::Value(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn converts_to_the_same_value_serde_json_builds() {
        let tree = Json::object([
            ("n", Json::Null),
            ("b", true.into()),
            ("i", (-7i64).into()),
            ("big", u64::MAX.into()),
            ("f", 0.5f64.into()),
            ("s", "x".into()),
            ("none", Option::<i32>::None.into()),
            (
                "a",
                Json::Array(vec![1i32.into(), Json::object([("k", "v".into())])]),
            ),
            ("v", json!({"raw": [1, 2]}).into()),
        ]);
        assert_eq!(
            Value::from(tree),
            json!({"n": null, "b": true, "i": -7, "big": u64::MAX, "f": 0.5, "s": "x",
                   "none": null, "a": [1, {"k": "v"}], "v": {"raw": [1, 2]}})
        );
    }

    #[test]
    fn insert_replaces_a_key_instead_of_repeating_it() {
        let mut tree = Json::object([("a", 1i32.into())]);
        tree.insert("b", 3i32.into());
        tree.insert("b", 4i32.into());
        assert_eq!(
            tree,
            Json::Object(vec![("a", Json::Int(1)), ("b", Json::Int(4))])
        );
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        let tree = Json::object([("a", 1i32.into()), ("b", 2i32.into()), ("a", 3i32.into())]);
        assert_eq!(Value::from(tree), json!({"a": 3, "b": 2}));
    }

    #[test]
    fn insert_into_a_scalar_is_ignored() {
        let mut tree = Json::Int(1);
        tree.insert("a", Json::Null);
        assert_eq!(tree, Json::Int(1));
    }
}
