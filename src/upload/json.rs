//! A minimal JSON writer for request bodies whose exact text is signed.
//!
//! Why not `serde_json::Value`: it keeps neither the field order we want nor decimal
//! numbers without going through `f64` (and turning on `arbitrary_precision` would change
//! number handling crate-wide). Here a number is written from its decimal text, strings
//! are escaped by serde_json (raw UTF-8, the form both vendors accept), objects keep the
//! order they are built in.

use rust_decimal::Decimal;

#[derive(Debug, Clone)]
pub(crate) enum J {
    /// No body field is null today (the seed's optional strings go as ""), but the
    /// writer keeps JSON whole.
    #[allow(dead_code)]
    Null,
    Bool(bool),
    Int(i64),
    /// A JSON number written from the decimal's own text.
    Num(Decimal),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

impl J {
    pub(crate) fn str(s: impl Into<String>) -> J {
        J::Str(s.into())
    }

    pub(crate) fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Int(i) => out.push_str(&i.to_string()),
            J::Num(d) => out.push_str(&d.to_string()),
            J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push('"');
                    out.push_str(k);
                    out.push_str("\":");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub(crate) fn to_text(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_compact_ordered_exact_json() {
        let j = J::Obj(vec![
            ("b", J::Num("-1.50".parse().unwrap())),
            ("a", J::str("可乐\"x\"")),
            ("n", J::Arr(vec![J::Null, J::Bool(true), J::Int(-3)])),
        ]);
        let text = j.to_text();
        assert_eq!(text, r#"{"b":-1.50,"a":"可乐\"x\"","n":[null,true,-3]}"#);
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["a"], "可乐\"x\"");
    }
}
