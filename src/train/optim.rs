//! AdamW written out over the model's tensors rather than libtorch's optimizer object, because a
//! checkpoint must hold the optimizer's moments to resume bit-exactly and tch does not expose them.
//! The update is PyTorch's `AdamW` (decoupled weight decay, bias-corrected moments); weight decay applies
//! to matrices (embeddings and projections) only, never to norm gains.

use tch::{nn::VarStore, Kind, Tensor};

pub struct AdamW {
    /// (name, parameter, decayed), sorted by name so state order is stable.
    params: Vec<(String, Tensor, bool)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken (the bias-correction exponent).
    pub steps: i64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl AdamW {
    pub fn new(vs: &VarStore, beta1: f64, beta2: f64, weight_decay: f64) -> AdamW {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params: Vec<(String, Tensor, bool)> = vars
            .into_iter()
            .map(|(name, t)| {
                let decay = t.dim() >= 2;
                (name, t, decay)
            })
            .collect();
        let zeros = |t: &Tensor| Tensor::zeros_like(t).set_requires_grad(false);
        AdamW {
            m: params.iter().map(|(_, t, _)| zeros(t)).collect(),
            v: params.iter().map(|(_, t, _)| zeros(t)).collect(),
            params,
            steps: 0,
            beta1,
            beta2,
            eps: 1e-8,
            weight_decay,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p, _) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The global L2 norm of the gradients (before clipping).
    pub fn grad_norm(&self) -> f64 {
        tch::no_grad(|| {
            let mut total = Tensor::zeros([], (Kind::Float, self.device()));
            for (_, p, _) in &self.params {
                let g = p.grad();
                if g.defined() {
                    total += g.to_kind(Kind::Float).pow_tensor_scalar(2).sum(Kind::Float);
                }
            }
            total.sqrt().double_value(&[])
        })
    }

    fn device(&self) -> tch::Device {
        self.params
            .first()
            .map(|(_, p, _)| p.device())
            .unwrap_or(tch::Device::Cpu)
    }

    /// Clips the gradients to `max_norm` (when given), takes one step at `lr`; returns the norm before
    /// clipping.
    pub fn step(&mut self, lr: f64, max_norm: Option<f64>) -> f64 {
        let norm = self.grad_norm();
        let scale = match max_norm {
            Some(max) if norm > max => max / (norm + 1e-6),
            _ => 1.0,
        };
        self.steps += 1;
        let bias1 = 1.0 - self.beta1.powi(self.steps as i32);
        let bias2 = 1.0 - self.beta2.powi(self.steps as i32);
        tch::no_grad(|| {
            for (i, (_, p, decay)) in self.params.iter_mut().enumerate() {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let g = if scale < 1.0 { g * scale } else { g };
                let m = &mut self.m[i];
                let v = &mut self.v[i];
                let _ = m.g_mul_scalar_(self.beta1);
                let _ = m.g_add_(&(&g * (1.0 - self.beta1)));
                let _ = v.g_mul_scalar_(self.beta2);
                let _ = v.g_add_(&(&g * &g * (1.0 - self.beta2)));
                if *decay && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let denom = (&*v / bias2).sqrt() + self.eps;
                let update = (&*m / bias1) / denom * lr;
                let _ = p.g_sub_(&update);
            }
        });
        norm
    }

    /// The moments, named `m.<param>` and `v.<param>`, for a checkpoint.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(self.params.len() * 2);
        for (i, (name, _, _)) in self.params.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].shallow_clone()));
            out.push((format!("v.{name}"), self.v[i].shallow_clone()));
        }
        out
    }

    /// Restores moments saved by [`AdamW::state`]; `lookup` returns a saved tensor by name.
    pub fn load_state(
        &mut self,
        steps: i64,
        lookup: &mut dyn FnMut(&str) -> Option<Tensor>,
    ) -> Result<(), String> {
        tch::no_grad(|| {
            for (i, (name, p, _)) in self.params.iter().enumerate() {
                for (prefix, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                    let key = format!("{prefix}.{name}");
                    let t = lookup(&key).ok_or_else(|| format!("checkpoint lacks optimizer state {key}"))?;
                    if t.size() != p.size() {
                        return Err(format!(
                            "optimizer state {key} has shape {:?}, expected {:?}",
                            t.size(),
                            p.size()
                        ));
                    }
                    slot.copy_(&t.to_device(p.device()).to_kind(slot.kind()));
                }
            }
            Ok(())
        })?;
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{self, Module};

    /// One AdamW step against the closed form PyTorch's AdamW computes.
    #[test]
    fn matches_the_adamw_update_rule() {
        let vs = VarStore::new(tch::Device::Cpu);
        let mut lin = nn::linear(
            vs.root(),
            2,
            1,
            nn::LinearConfig {
                bias: false,
                ..Default::default()
            },
        );
        tch::no_grad(|| lin.ws.copy_(&Tensor::from_slice(&[1.0f32, -2.0]).view([1, 2])));
        let mut opt = AdamW::new(&vs, 0.9, 0.95, 0.1);
        let x = Tensor::from_slice(&[3.0f32, 4.0]).view([1, 2]);
        lin.forward(&x).sum(Kind::Float).backward();
        // grad = x = [3, 4]; m = 0.1 g, v = 0.05 g²; m̂ = g, v̂ = g²; update = lr * g / (|g| + eps) = lr * sign(g).
        let lr = 0.01;
        let norm = opt.step(lr, None);
        assert!((norm - 5.0).abs() < 1e-5);
        let w = Vec::<f32>::try_from(lin.ws.view([-1])).unwrap();
        let expect = |w0: f64| (w0 * (1.0 - lr * 0.1) - lr) as f32;
        assert!((w[0] - expect(1.0)).abs() < 1e-6, "{w:?}");
        assert!((w[1] - expect(-2.0)).abs() < 1e-6, "{w:?}");
    }

    #[test]
    fn clipping_scales_gradients_to_the_max_norm() {
        let vs = VarStore::new(tch::Device::Cpu);
        let lin = nn::linear(
            vs.root(),
            2,
            1,
            nn::LinearConfig {
                bias: false,
                ..Default::default()
            },
        );
        let mut opt = AdamW::new(&vs, 0.9, 0.95, 0.0);
        let x = Tensor::from_slice(&[30.0f32, 40.0]).view([1, 2]);
        lin.forward(&x).sum(Kind::Float).backward();
        assert!((opt.step(0.0, Some(1.0)) - 50.0).abs() < 1e-3);
        let m = Vec::<f32>::try_from(opt.state()[0].1.view([-1])).unwrap();
        // m = (1 - β1) · g · (1/50)
        assert!((m[0] - 0.1 * 30.0 / 50.0).abs() < 1e-5, "{m:?}");
    }
}
