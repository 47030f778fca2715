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

    /// The gradients that exist, in parameter order (`None` where a parameter got none).
    fn grads(&self) -> Vec<Option<Tensor>> {
        self.params
            .iter()
            .map(|(_, p, _)| {
                let g = p.grad();
                g.defined().then_some(g)
            })
            .collect()
    }

    /// The global L2 norm of the gradients (before clipping), as a float32 scalar on the model's device.
    fn global_norm(grads: &[Option<Tensor>], device: tch::Device) -> Tensor {
        let norms: Vec<Tensor> = grads
            .iter()
            .flatten()
            .map(|g| g.to_kind(Kind::Float).norm())
            .collect();
        if norms.is_empty() {
            return Tensor::zeros([], (Kind::Float, device));
        }
        Tensor::stack(&norms, 0).norm()
    }

    fn device(&self) -> tch::Device {
        self.params
            .first()
            .map(|(_, p, _)| p.device())
            .unwrap_or(tch::Device::Cpu)
    }

    /// Clips the gradients to `max_norm` (when given) and takes one step at `lr`. Returns the gradient
    /// norm before clipping as a scalar tensor on the model's device: nothing here waits for the device,
    /// so on a GPU the update is queued behind the backward pass and the caller reads the norm (one
    /// synchronisation) together with the loss.
    ///
    /// The update is PyTorch's AdamW written with few passes over memory: the clip factor stays on the
    /// device (`max / (norm + 1e-6)` where the norm exceeds `max`, else 1) and scales the gradients in
    /// place; `m ← lerp(m, g, 1 − β1)`, `v ← lerp(v, g², 1 − β2)`; matrices decay by `1 − lr·wd`; then
    /// `p ← p − lr/(1 − β1ᵗ) · m / (√v/√(1 − β2ᵗ) + ε)` as one `addcdiv` against a rescaled denominator.
    pub fn step(&mut self, lr: f64, max_norm: Option<f64>) -> Tensor {
        self.steps += 1;
        let bias1 = 1.0 - self.beta1.powi(self.steps as i32);
        let bias2 = 1.0 - self.beta2.powi(self.steps as i32);
        let device = self.device();
        tch::no_grad(|| {
            let mut grads = self.grads();
            let norm = Self::global_norm(&grads, device);
            if let Some(max) = max_norm {
                let factor = ((&norm + 1e-6).reciprocal() * max).where_scalarother(&norm.gt(max), 1.0);
                for g in grads.iter_mut().flatten() {
                    let _ = g.g_mul_(&factor);
                }
            }
            // p − lr/bias1 · m / (√v/√bias2 + ε) = p + m / ((√v + ε·√bias2) · −bias1/(lr·√bias2)).
            let root2 = bias2.sqrt();
            let denom_scale = -bias1 / (lr * root2);
            for (i, (_, p, decay)) in self.params.iter_mut().enumerate() {
                let Some(g) = &grads[i] else { continue };
                let m = &mut self.m[i];
                let v = &mut self.v[i];
                let _ = m.lerp_(g, 1.0 - self.beta1);
                let _ = v.lerp_(&g.square(), 1.0 - self.beta2);
                if lr == 0.0 {
                    continue;
                }
                if *decay && self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - lr * self.weight_decay);
                }
                let mut denom = v.sqrt();
                let _ = denom.g_add_scalar_(self.eps * root2);
                let _ = denom.g_mul_scalar_(denom_scale);
                let _ = p.addcdiv_(m, &denom);
            }
            norm
        })
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
        let norm = opt.step(lr, None).double_value(&[]);
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
        assert!((opt.step(0.0, Some(1.0)).double_value(&[]) - 50.0).abs() < 1e-3);
        let m = Vec::<f32>::try_from(opt.state()[0].1.view([-1])).unwrap();
        // m = (1 - β1) · g · (1/50)
        assert!((m[0] - 0.1 * 30.0 / 50.0).abs() < 1e-5, "{m:?}");
    }
    /// Several steps with clipping, weight decay on the matrix only and a zero learning rate in the
    /// middle, against PyTorch's AdamW written out in f64 on the host.
    #[test]
    fn several_steps_match_adamw_in_f64() {
        let vs = VarStore::new(tch::Device::Cpu);
        let root = vs.root();
        let w = root.var_copy("w", &Tensor::from_slice(&[0.5f32, -1.5, 2.0, 0.25]).view([2, 2]));
        let gain = root.var_copy("gain", &Tensor::from_slice(&[1.0f32, 0.75]));
        let mut opt = AdamW::new(&vs, 0.9, 0.95, 0.1);
        // Host copies, in the optimizer's (name-sorted) order: gain, then w.
        let mut host: Vec<(Vec<f64>, bool)> =
            vec![(vec![1.0, 0.75], false), (vec![0.5, -1.5, 2.0, 0.25], true)];
        let mut m = [vec![0.0; 2], vec![0.0; 4]];
        let mut v = [vec![0.0; 2], vec![0.0; 4]];
        let inputs = [[3.0f32, -4.0], [0.1, 0.2], [30.0, 1.0], [-0.5, 0.5]];
        let lrs = [0.01, 0.0, 0.02, 0.005];
        for (step, (x, lr)) in inputs.iter().zip(lrs).enumerate() {
            opt.zero_grad();
            let xt = Tensor::from_slice(x).view([1, 2]);
            let y = (xt.matmul(&w) * &gain).sum(Kind::Float);
            let y = &y * &y;
            y.backward();
            let grads: Vec<Vec<f64>> = [&gain, &w]
                .iter()
                .map(|t| {
                    Vec::<f32>::try_from(t.grad().view([-1]))
                        .unwrap()
                        .into_iter()
                        .map(f64::from)
                        .collect()
                })
                .collect();
            let norm = grads.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
            let got = opt.step(lr, Some(1.0)).double_value(&[]);
            assert!(
                (got - norm).abs() <= 1e-4 * norm.max(1.0),
                "step {step}: norm {got} vs {norm}"
            );
            let factor = if norm > 1.0 { 1.0 / (norm + 1e-6) } else { 1.0 };
            let t = (step + 1) as i32;
            let (bias1, bias2) = (1.0 - 0.9f64.powi(t), 1.0 - 0.95f64.powi(t));
            for (k, (p, decay)) in host.iter_mut().enumerate() {
                for j in 0..p.len() {
                    let g = grads[k][j] * factor;
                    m[k][j] = 0.9 * m[k][j] + 0.1 * g;
                    v[k][j] = 0.95 * v[k][j] + 0.05 * g * g;
                    if *decay {
                        p[j] *= 1.0 - lr * 0.1;
                    }
                    p[j] -= lr * (m[k][j] / bias1) / ((v[k][j] / bias2).sqrt() + 1e-8);
                }
            }
            for (k, t) in [&gain, &w].iter().enumerate() {
                let got = Vec::<f32>::try_from(t.view([-1])).unwrap();
                for (a, b) in got.iter().zip(&host[k].0) {
                    assert!(
                        (f64::from(*a) - b).abs() < 1e-5,
                        "step {step}: {got:?} vs {:?}",
                        host[k].0
                    );
                }
            }
        }
        assert_eq!(opt.steps, 4);
    }
}
