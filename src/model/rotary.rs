//! Rotary position embeddings (RoPE) as transformers applies them to queries and keys: the
//! features' two halves rotated together, x·cos + rotate_half(x)·sin, with the frequencies
//! θ^(−2i/d) of `rope_theta` = θ, optionally rescaled (`rope_scaling` of type `linear`,
//! `dynamic` or `llama3`).

use anyhow::{Result, bail};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;

/// How the frequencies are rescaled for contexts longer than the pretraining one.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// `default`: θ^(−2i/d) as they are.
    None,
    /// `linear`: every frequency divided by `factor` (positions interpolated).
    Linear { factor: f64 },
    /// `dynamic` (NTK): θ grows once the input is longer than `original_max`, which is
    /// `max_position_embeddings` (as in transformers 5, which ignores the config's
    /// `original_max_position_embeddings` for this type), so within the positions a model
    /// accepts it changes nothing.
    Dynamic { factor: f64, original_max: usize },
    /// `llama3`: low frequencies divided by `factor`, high ones kept, a blend in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max: usize,
    },
}

/// The rotary embedding of one attention kind.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f64,
    /// The rotated features per head (the head dimension).
    pub dim: usize,
    pub scaling: RopeScaling,
}

impl RopeScaling {
    /// A `rope_scaling` object (or transformers 5's `rope_parameters`), for a model whose
    /// position table has `max_positions` entries. Types this code does not implement are
    /// refused by name.
    pub fn from_json(value: &Value, max_positions: usize) -> Result<Self> {
        let kind = value
            .get("rope_type")
            .or_else(|| value.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let number = |key: &str| -> Result<f64> {
            match value.get(key).and_then(Value::as_f64) {
                Some(v) if v > 0.0 => Ok(v),
                _ => bail!("rope type \"{kind}\" needs a positive number \"{key}\""),
            }
        };
        Ok(match kind {
            "default" => RopeScaling::None,
            "linear" => RopeScaling::Linear {
                factor: number("factor")?,
            },
            "dynamic" => RopeScaling::Dynamic {
                factor: number("factor")?,
                original_max: max_positions,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max: number("original_max_position_embeddings")? as usize,
            },
            other => bail!(
                "unsupported rope type \"{other}\" (pac-wgpu implements default, linear, dynamic and llama3)"
            ),
        })
    }
}

impl Rope {
    /// The inverse frequencies of the `dim / 2` feature pairs for inputs of `seq` positions.
    pub fn inv_freq(&self, seq: usize) -> Vec<f64> {
        let d = self.dim as f64;
        let base = match self.scaling {
            RopeScaling::Dynamic {
                factor,
                original_max,
            } if seq > original_max => {
                let grown = factor * seq as f64 / original_max as f64 - (factor - 1.0);
                self.theta * grown.powf(d / (d - 2.0))
            }
            _ => self.theta,
        };
        let plain = (0..self.dim / 2).map(|i| base.powf(-((2 * i) as f64) / d));
        match self.scaling {
            RopeScaling::Linear { factor } => plain.map(|f| f / factor).collect(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max,
            } => plain
                .map(|f| llama3_frequency(f, factor, low, high, original_max as f64))
                .collect(),
            RopeScaling::None | RopeScaling::Dynamic { .. } => plain.collect(),
        }
    }

    /// (cos, sin), each `[1, 1, seq, dim]`, for positions 0..seq: the angle of position t and
    /// pair i is t·inv_freq[i] (in f32, as transformers computes it), repeated over both halves.
    /// Only the `dim` frequencies go to the device.
    pub fn tables(&self, seq: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
        let inv_freq = self.inv_freq(seq);
        let both_halves: Vec<f32> = inv_freq
            .iter()
            .chain(&inv_freq)
            .map(|&f| f as f32)
            .collect();
        let freq = Tensor::<1>::from_data(TensorData::new(both_halves, [self.dim]), device);
        let positions = Tensor::<1, Int>::arange(0..seq as i64, device).float();
        let angles = positions.reshape([seq, 1]) * freq.reshape([1, self.dim]);
        let table = |t: Tensor<2>| t.reshape([1, 1, seq, self.dim]);
        (table(angles.clone().cos()), table(angles.sin()))
    }
}

/// Llama 3's rescaling of one frequency: wavelengths beyond the pretraining context's
/// `1/low` share slowed by `factor`, those under its `1/high` share kept, a blend between.
fn llama3_frequency(f: f64, factor: f64, low: f64, high: f64, context: f64) -> f64 {
    let wavelength = 2.0 * std::f64::consts::PI / f;
    if wavelength < context / high {
        f
    } else if wavelength > context / low {
        f / factor
    } else {
        let smooth = (context / wavelength - low) / (high - low);
        (1.0 - smooth) * f / factor + smooth * f
    }
}

/// `x` (`[batch, heads, seq, dim]`) rotated by the tables of [`Rope::tables`].
pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [.., dim] = x.dims();
    let half = dim / 2;
    let rotated = Tensor::cat(
        vec![
            x.clone().narrow(3, half, dim - half).neg(),
            x.clone().narrow(3, 0, half),
        ],
        3,
    );
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(scaling: RopeScaling) -> Rope {
        Rope {
            theta: 10000.0,
            dim: 8,
            scaling,
        }
    }

    #[test]
    fn plain_frequencies_fall_geometrically_from_one() {
        let f = rope(RopeScaling::None).inv_freq(4);
        assert_eq!(f.len(), 4);
        assert_eq!(f[0], 1.0);
        for i in 1..4 {
            assert!((f[i] / f[i - 1] - 10000f64.powf(-0.25)).abs() < 1e-12);
        }
    }

    #[test]
    fn scalings_change_what_they_should() {
        let plain = rope(RopeScaling::None).inv_freq(16);
        let linear = rope(RopeScaling::Linear { factor: 4.0 }).inv_freq(16);
        assert!(
            plain
                .iter()
                .zip(&linear)
                .all(|(p, l)| (p / 4.0 - l).abs() < 1e-15)
        );
        let dynamic = RopeScaling::Dynamic {
            factor: 2.0,
            original_max: 16,
        };
        assert_eq!(rope(dynamic.clone()).inv_freq(16), plain);
        let longer = rope(dynamic).inv_freq(64);
        assert!(longer[1] < rope(RopeScaling::None).inv_freq(64)[1]);
        // Llama 3: the highest frequency kept, the lowest divided by the factor.
        let llama3 = rope(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max: 64,
        })
        .inv_freq(16);
        assert_eq!(llama3[0], plain[0]);
        assert!((llama3[3] - plain[3] / 8.0).abs() < 1e-15);
    }

    #[test]
    fn unknown_rope_types_are_refused_by_name() {
        let yarn = serde_json::json!({"rope_type": "yarn", "factor": 4.0});
        let error = RopeScaling::from_json(&yarn, 128).unwrap_err().to_string();
        assert!(error.contains("\"yarn\""), "{error}");
        let llama3 = serde_json::json!({"rope_type": "llama3", "factor": 8.0});
        assert!(RopeScaling::from_json(&llama3, 128).is_err());
    }
}
