//! Median / min / max of a set of samples.

use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub samples: Vec<f64>,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            samples: samples.to_vec(),
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "median": round(self.median),
            "min": round(self.min),
            "max": round(self.max),
            "samples": self.samples.iter().map(|&s| round(s)).collect::<Vec<_>>(),
        })
    }
}

/// Three decimals are plenty for ms, MiB and MiB/s.
pub fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn summary_json(s: &Option<Summary>) -> Value {
    s.as_ref().map(Summary::json).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_and_even_medians() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Summary::of(&[4.0, 1.0, 2.0, 3.0]).unwrap().median, 2.5);
        assert!(Summary::of(&[]).is_none());
    }
}
