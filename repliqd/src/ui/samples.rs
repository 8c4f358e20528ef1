//! The samples of an OpenMetrics (or Prometheus text) exposition, read back into numbers: the
//! status JSON is built from the very text `/metrics` serves, so the two cannot disagree.

use std::collections::BTreeMap;

/// The labels of one sample, by name.
pub type Labels = BTreeMap<String, String>;

/// Every sample of an exposition, by sample name (`repliq_enqueued_records_total`, with the
/// `_total` suffix OpenMetrics gives counters).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Samples {
    by_name: BTreeMap<String, Vec<(Labels, f64)>>,
}

/// A line of the exposition that is not a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for SampleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for SampleError {}

impl Samples {
    /// Reads every sample line (`name{label="value",...} value [timestamp]`); comment lines
    /// (`# HELP`, `# TYPE`, `# UNIT`, `# EOF`) and blank lines are skipped.
    ///
    /// # Errors
    ///
    /// [`SampleError`] naming the line of a sample that cannot be read.
    pub fn parse(text: &str) -> Result<Samples, SampleError> {
        let mut by_name: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| SampleError {
                line: i + 1,
                reason: reason.to_owned(),
            };
            let name_end = line
                .find(['{', ' '])
                .ok_or_else(|| err("a sample without a value"))?;
            let name = &line[..name_end];
            let mut rest = &line[name_end..];
            let mut labels = Labels::new();
            if let Some(after) = rest.strip_prefix('{') {
                let (parsed, tail) = parse_labels(after).map_err(|r| err(&r))?;
                labels = parsed;
                rest = tail;
            }
            let value = rest
                .split_whitespace()
                .next()
                .ok_or_else(|| err("a sample without a value"))?;
            let value = parse_value(value).ok_or_else(|| err(&format!("bad value {value:?}")))?;
            by_name
                .entry(name.to_owned())
                .or_default()
                .push((labels, value));
        }
        Ok(Samples { by_name })
    }

    /// Every sample named `name`.
    pub fn all(&self, name: &str) -> impl Iterator<Item = (&Labels, f64)> {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .map(|(l, v)| (l, *v))
    }

    /// The value of the sample `name` whose labels include every pair of `with`.
    #[must_use]
    pub fn get(&self, name: &str, with: &[(&str, &str)]) -> Option<f64> {
        self.all(name)
            .find(|(labels, _)| {
                with.iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
    }
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// `label="value",...}` and what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Labels::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let eq = s.find('=').ok_or("a label without `=`")?;
        let name = s[..eq].trim().to_owned();
        let mut chars = s[eq + 1..].char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return Err(format!("label {name}: the value is not quoted"));
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => break,
                },
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        let end = end.ok_or_else(|| format!("label {name}: the value is not closed"))?;
        labels.insert(name, value);
        s = &s[end..];
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn samples_with_labels_escapes_and_comments() {
        let text = "# HELP a_total A\n# TYPE a counter\na_total{queue=\"q\",cursor=\"x\\\"y\"} 3\n\
                    b 1.5\nc{le=\"+Inf\"} 7 1700000000\n# EOF\n";
        let s = Samples::parse(text).unwrap();
        assert_eq!(s.get("a_total", &[("queue", "q")]), Some(3.0));
        assert_eq!(s.get("a_total", &[("cursor", "x\"y")]), Some(3.0));
        assert_eq!(s.get("a_total", &[("queue", "r")]), None);
        assert_eq!(s.get("b", &[]), Some(1.5));
        assert_eq!(s.get("c", &[("le", "+Inf")]), Some(7.0));
    }

    #[test]
    fn a_bad_sample_names_its_line() {
        let e = Samples::parse("ok 1\nbad{queue=\"q} 1\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("not closed"), "{e}");
        let e = Samples::parse("x abc\n").unwrap_err();
        assert_eq!(e.line, 1);
    }
}
