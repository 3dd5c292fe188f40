//! The deterministic train / validation / test split of an adapter run: a
//! function of its call id alone, so adding calls never moves one.

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::util::usage;

/// Fractions of calls for training and validation; the test split is the rest.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitFractions {
    pub train: f64,
    pub val: f64,
}

impl Default for SplitFractions {
    fn default() -> Self {
        SplitFractions {
            train: 0.8,
            val: 0.1,
        }
    }
}

impl SplitFractions {
    pub fn test(&self) -> f64 {
        1.0 - self.train - self.val
    }

    pub fn validate(&self) -> Result<()> {
        let ok = |x: f64| (0.0..=1.0).contains(&x);
        if !(ok(self.train) && ok(self.val) && self.train > 0.0 && self.test() > -1e-9) {
            return Err(usage(format!(
                "split fractions must be in [0, 1] with train > 0 and train + val <= 1 (got train {}, val {})",
                self.train, self.val
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Val,
    Test,
}

/// The call's position in `[0, 1)`: the first 8 bytes of
/// SHA-256("slmforge-split-v1:" + call_id). Depends on nothing but the id,
/// so a call never changes split when other calls arrive.
pub fn split_point(call_id: &str) -> f64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("slmforge-split-v1:{call_id}").as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Which split a call belongs to.
pub fn split_of(call_id: &str, f: &SplitFractions) -> Split {
    let u = split_point(call_id);
    if u < f.train {
        Split::Train
    } else if u < f.train + f.val {
        Split::Val
    } else {
        Split::Test
    }
}
