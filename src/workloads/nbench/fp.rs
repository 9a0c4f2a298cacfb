//! The floating-point kernels of BYTEmark (nbench): Fourier coefficients by numeric
//! integration, a back-propagation neural net and LU decomposition.

use std::hint::black_box;
use std::time::{Duration, Instant};

use super::{check_failed, Bench, Kernel, Rng};
use crate::workloads::WorkloadError;

/// The floating-point index, in nbench's order.
pub(crate) static KERNELS: &[Kernel] = &[
    Kernel {
        name: "fourier",
        reference: 20.0,
        iteration:
            "the first 50 Fourier coefficient pairs of (x+1)^x on [0, 2], 200-step trapezoids",
        setup: Fourier::boxed,
    },
    Kernel {
        name: "neural_net",
        reference: 35.0,
        iteration: "20 back-propagation epochs of a 35-8-8 net over 26 patterns",
        setup: NeuralNet::boxed,
    },
    Kernel {
        name: "lu_decomposition",
        reference: 46.0,
        iteration:
            "solving a 101x101 linear system by Crout LU decomposition with partial pivoting",
        setup: Lu::boxed,
    },
];

// ---------------------------------------------------------------------------
// Fourier coefficients

const FOURIER_PAIRS: usize = 50;
const FOURIER_STEPS: usize = 200;

struct Fourier {
    a: Vec<f64>,
    b: Vec<f64>,
    expected_a: Vec<f64>,
    expected_b: Vec<f64>,
}

impl Fourier {
    fn boxed() -> Box<dyn Bench> {
        let mut expected_a = vec![0.0; FOURIER_PAIRS];
        let mut expected_b = vec![0.0; FOURIER_PAIRS];
        fourier_coefficients(std::f64::consts::PI, &mut expected_a, &mut expected_b);
        Box::new(Fourier {
            a: vec![0.0; FOURIER_PAIRS],
            b: vec![0.0; FOURIER_PAIRS],
            expected_a,
            expected_b,
        })
    }
}

impl Bench for Fourier {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        let omega = black_box(std::f64::consts::PI);
        let t0 = Instant::now();
        fourier_coefficients(omega, &mut self.a, &mut self.b);
        let t = t0.elapsed();
        if self.a != self.expected_a || self.b != self.expected_b {
            return Err(check_failed(
                "fourier",
                "coefficients differ from the set-up computation".into(),
            ));
        }
        Ok(t)
    }
}

/// nbench's function: f(x) = (x+1)^x, times cos or sin of ωx.
fn fourier_f(x: f64, omega_n: f64, select: u8) -> f64 {
    let f = (x + 1.0).powf(x);
    match select {
        0 => f,
        1 => f * (omega_n * x).cos(),
        _ => f * (omega_n * x).sin(),
    }
}

/// Trapezoidal rule over [x0, x1] in `steps` steps.
fn trapezoid(x0: f64, x1: f64, steps: usize, omega_n: f64, select: u8) -> f64 {
    let dx = (x1 - x0) / steps as f64;
    let mut sum = (fourier_f(x0, omega_n, select) + fourier_f(x1, omega_n, select)) / 2.0;
    for i in 1..steps {
        sum += fourier_f(x0 + i as f64 * dx, omega_n, select);
    }
    sum * dx
}

/// a₀ (the mean) and aₙ, bₙ for n ≥ 1 over one period [0, 2] (ω = π).
fn fourier_coefficients(omega: f64, a: &mut [f64], b: &mut [f64]) {
    a[0] = trapezoid(0.0, 2.0, FOURIER_STEPS, 0.0, 0) / 2.0;
    b[0] = 0.0;
    for n in 1..a.len() {
        let w = omega * n as f64;
        a[n] = trapezoid(0.0, 2.0, FOURIER_STEPS, w, 1);
        b[n] = trapezoid(0.0, 2.0, FOURIER_STEPS, w, 2);
    }
}

// ---------------------------------------------------------------------------
// Neural net

const NN_IN: usize = 35; // a 5x7 pixel letter
const NN_HIDDEN: usize = 8;
const NN_OUT: usize = 8; // the letter's ASCII code, one bit per output
const NN_PATTERNS: usize = 26;
const NN_EPOCHS: usize = 20;
const NN_RATE: f64 = 0.3;
const NN_MOMENTUM: f64 = 0.7;

/// Weights of both layers (one extra bias weight per neuron) and their last changes.
#[derive(Clone, PartialEq)]
struct Net {
    w_hidden: [[f64; NN_IN + 1]; NN_HIDDEN],
    w_out: [[f64; NN_HIDDEN + 1]; NN_OUT],
    dw_hidden: [[f64; NN_IN + 1]; NN_HIDDEN],
    dw_out: [[f64; NN_HIDDEN + 1]; NN_OUT],
}

struct NeuralNet {
    inputs: Vec<[f64; NN_IN]>,
    targets: Vec<[f64; NN_OUT]>,
    initial: Net,
    net: Net,
    expected: Net,
}

impl NeuralNet {
    fn boxed() -> Box<dyn Bench> {
        let (inputs, targets, initial) = nn_setup();
        let mut expected = initial.clone();
        nn_train(&mut expected, &inputs, &targets, NN_EPOCHS);
        Box::new(NeuralNet {
            net: initial.clone(),
            inputs,
            targets,
            initial,
            expected,
        })
    }
}

type NnData = (Vec<[f64; NN_IN]>, Vec<[f64; NN_OUT]>, Net);

fn nn_setup() -> NnData {
    let mut rng = Rng::new(37);
    let inputs: Vec<[f64; NN_IN]> = (0..NN_PATTERNS)
        .map(|_| std::array::from_fn(|_| rng.below(2) as f64))
        .collect();
    let targets: Vec<[f64; NN_OUT]> = (0..NN_PATTERNS)
        .map(|p| {
            let code = b'A' + p as u8;
            std::array::from_fn(|bit| if code >> bit & 1 == 1 { 0.9 } else { 0.1 })
        })
        .collect();
    let mut w = || rng.unit() - 0.5;
    let net = Net {
        w_hidden: std::array::from_fn(|_| std::array::from_fn(|_| w())),
        w_out: std::array::from_fn(|_| std::array::from_fn(|_| w())),
        dw_hidden: [[0.0; NN_IN + 1]; NN_HIDDEN],
        dw_out: [[0.0; NN_HIDDEN + 1]; NN_OUT],
    };
    (inputs, targets, net)
}

impl Bench for NeuralNet {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        self.net.clone_from(&self.initial);
        let (inputs, targets) = (black_box(&self.inputs[..]), black_box(&self.targets[..]));
        let t0 = Instant::now();
        nn_train(&mut self.net, inputs, targets, NN_EPOCHS);
        let t = t0.elapsed();
        if self.net != self.expected {
            return Err(check_failed(
                "neural_net",
                "trained weights differ from the set-up computation".into(),
            ));
        }
        Ok(t)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Forward pass: hidden and output activations.
fn nn_forward(net: &Net, x: &[f64; NN_IN]) -> ([f64; NN_HIDDEN], [f64; NN_OUT]) {
    let hidden: [f64; NN_HIDDEN] = std::array::from_fn(|h| {
        let w = &net.w_hidden[h];
        let s: f64 = w[..NN_IN].iter().zip(x).map(|(w, x)| w * x).sum();
        sigmoid(s + w[NN_IN])
    });
    let out: [f64; NN_OUT] = std::array::from_fn(|o| {
        let w = &net.w_out[o];
        let s: f64 = w[..NN_HIDDEN].iter().zip(&hidden).map(|(w, h)| w * h).sum();
        sigmoid(s + w[NN_HIDDEN])
    });
    (hidden, out)
}

/// Online back-propagation with momentum, pattern by pattern, as nbench does.
fn nn_train(net: &mut Net, inputs: &[[f64; NN_IN]], targets: &[[f64; NN_OUT]], epochs: usize) {
    for _ in 0..epochs {
        for (x, t) in inputs.iter().zip(targets) {
            let (hidden, out) = nn_forward(net, x);
            let d_out: [f64; NN_OUT] =
                std::array::from_fn(|o| (t[o] - out[o]) * out[o] * (1.0 - out[o]));
            let d_hidden: [f64; NN_HIDDEN] = std::array::from_fn(|h| {
                let back: f64 = (0..NN_OUT).map(|o| net.w_out[o][h] * d_out[o]).sum();
                hidden[h] * (1.0 - hidden[h]) * back
            });
            update_layer(&mut net.w_out, &mut net.dw_out, &d_out, &hidden);
            update_layer(&mut net.w_hidden, &mut net.dw_hidden, &d_hidden, x);
        }
    }
}

/// Gradient step with momentum for one layer: each neuron's weights (the last one is
/// the bias, whose input is 1) move by rate·delta·input plus momentum times their
/// previous change.
fn update_layer<const IN: usize, const IN1: usize, const N: usize>(
    w: &mut [[f64; IN1]; N],
    dw: &mut [[f64; IN1]; N],
    delta: &[f64; N],
    input: &[f64; IN],
) {
    debug_assert_eq!(IN1, IN + 1, "one weight per input plus the bias");
    for ((w, dw), &d) in w.iter_mut().zip(dw.iter_mut()).zip(delta) {
        let inputs = input.iter().copied().chain(std::iter::once(1.0));
        for ((w, dw), x) in w.iter_mut().zip(dw.iter_mut()).zip(inputs) {
            let change = NN_RATE * d * x + NN_MOMENTUM * *dw;
            *w += change;
            *dw = change;
        }
    }
}

/// Sum of squared output errors over all patterns.
#[cfg(test)]
fn nn_error(net: &Net, inputs: &[[f64; NN_IN]], targets: &[[f64; NN_OUT]]) -> f64 {
    inputs
        .iter()
        .zip(targets)
        .map(|(x, t)| {
            let (_, out) = nn_forward(net, x);
            out.iter()
                .zip(t)
                .map(|(o, t)| (t - o) * (t - o))
                .sum::<f64>()
        })
        .sum()
}

// ---------------------------------------------------------------------------
// LU decomposition

/// nbench's matrix order.
const LU_N: usize = 101;

struct Lu {
    pristine: Vec<f64>,
    a: Vec<f64>,
    rhs: Vec<f64>,
    b: Vec<f64>,
    solution: Vec<f64>,
    perm: Vec<usize>,
    scale: Vec<f64>,
}

impl Lu {
    fn boxed() -> Box<dyn Bench> {
        let mut rng = Rng::new(41);
        let pristine: Vec<f64> = (0..LU_N * LU_N).map(|_| rng.unit() * 2.0 - 1.0).collect();
        let solution: Vec<f64> = (0..LU_N).map(|_| rng.unit() * 10.0 - 5.0).collect();
        let rhs = (0..LU_N)
            .map(|i| {
                (0..LU_N)
                    .map(|j| pristine[i * LU_N + j] * solution[j])
                    .sum()
            })
            .collect();
        Box::new(Lu {
            a: pristine.clone(),
            pristine,
            rhs,
            b: vec![0.0; LU_N],
            solution,
            perm: vec![0; LU_N],
            scale: vec![0.0; LU_N],
        })
    }
}

impl Bench for Lu {
    fn iteration(&mut self) -> Result<Duration, WorkloadError> {
        self.a.copy_from_slice(&self.pristine);
        self.b.copy_from_slice(&self.rhs);
        let t0 = Instant::now();
        let ok = lu_decompose(
            black_box(&mut self.a),
            LU_N,
            &mut self.perm,
            &mut self.scale,
        );
        if ok {
            lu_back_substitute(&self.a, LU_N, &self.perm, black_box(&mut self.b));
        }
        let t = t0.elapsed();
        let err = self
            .b
            .iter()
            .zip(&self.solution)
            .map(|(x, s)| (x - s).abs())
            .fold(0.0, f64::max);
        if !ok || err.is_nan() || err >= 1e-8 {
            return Err(check_failed(
                "lu_decomposition",
                format!("singular={}, largest error in the solution {err:e}", !ok),
            ));
        }
        Ok(t)
    }
}

/// Crout's LU decomposition with implicit partial pivoting (Numerical Recipes'
/// `ludcmp`, which nbench uses), in place on a row-major n×n matrix. Returns false
/// when the matrix is singular.
fn lu_decompose(a: &mut [f64], n: usize, perm: &mut [usize], scale: &mut [f64]) -> bool {
    for i in 0..n {
        let big = a[i * n..(i + 1) * n]
            .iter()
            .fold(0.0f64, |m, x| m.max(x.abs()));
        if big == 0.0 {
            return false;
        }
        scale[i] = 1.0 / big;
    }
    for j in 0..n {
        for i in 0..j {
            let mut sum = a[i * n + j];
            for k in 0..i {
                sum -= a[i * n + k] * a[k * n + j];
            }
            a[i * n + j] = sum;
        }
        let mut big = 0.0;
        let mut imax = j;
        for i in j..n {
            let mut sum = a[i * n + j];
            for k in 0..j {
                sum -= a[i * n + k] * a[k * n + j];
            }
            a[i * n + j] = sum;
            let merit = scale[i] * sum.abs();
            if merit >= big {
                big = merit;
                imax = i;
            }
        }
        if j != imax {
            for k in 0..n {
                a.swap(imax * n + k, j * n + k);
            }
            scale[imax] = scale[j];
        }
        perm[j] = imax;
        if a[j * n + j] == 0.0 {
            return false;
        }
        let inv = 1.0 / a[j * n + j];
        for i in j + 1..n {
            a[i * n + j] *= inv;
        }
    }
    true
}

/// Solve LU·x = b in place (Numerical Recipes' `lubksb`).
fn lu_back_substitute(a: &[f64], n: usize, perm: &[usize], b: &mut [f64]) {
    let mut first_nonzero = None;
    for i in 0..n {
        let ip = perm[i];
        let mut sum = b[ip];
        b[ip] = b[i];
        if let Some(ii) = first_nonzero {
            for j in ii..i {
                sum -= a[i * n + j] * b[j];
            }
        } else if sum != 0.0 {
            first_nonzero = Some(i);
        }
        b[i] = sum;
    }
    for i in (0..n).rev() {
        let mut sum = b[i];
        for j in i + 1..n {
            sum -= a[i * n + j] * b[j];
        }
        b[i] = sum / a[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Composite Simpson's rule, for an independent value of the integrals.
    fn simpson(f: impl Fn(f64) -> f64, x0: f64, x1: f64, steps: usize) -> f64 {
        let h = (x1 - x0) / steps as f64;
        let mut s = f(x0) + f(x1);
        for i in 1..steps {
            s += f(x0 + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn fourier_coefficients_match_simpson() {
        let mut a = vec![0.0; 4];
        let mut b = vec![0.0; 4];
        fourier_coefficients(std::f64::consts::PI, &mut a, &mut b);
        let pi = std::f64::consts::PI;
        let a0 = simpson(|x| (x + 1.0).powf(x), 0.0, 2.0, 20_000) / 2.0;
        assert!((a[0] - a0).abs() < 1e-3, "a0 = {} vs {a0}", a[0]);
        let a1 = simpson(|x| (x + 1.0).powf(x) * (pi * x).cos(), 0.0, 2.0, 20_000);
        let b1 = simpson(|x| (x + 1.0).powf(x) * (pi * x).sin(), 0.0, 2.0, 20_000);
        assert!((a[1] - a1).abs() < 1e-3, "a1 = {} vs {a1}", a[1]);
        assert!((b[1] - b1).abs() < 1e-3, "b1 = {} vs {b1}", b[1]);
    }

    #[test]
    fn neural_net_training_reduces_the_error() {
        let (inputs, targets, mut net) = nn_setup();
        let before = nn_error(&net, &inputs, &targets);
        nn_train(&mut net, &inputs, &targets, 200);
        let after = nn_error(&net, &inputs, &targets);
        assert!(after < before / 4.0, "error {before} -> {after}");
    }

    #[test]
    fn lu_solves_a_small_system() {
        // y = 3, 2x + y = 5 -> x = 1, y = 3; the zero pivot forces a swap.
        let mut a = vec![0.0, 1.0, 2.0, 1.0];
        let mut b = vec![3.0, 5.0];
        let (mut perm, mut scale) = (vec![0; 2], vec![0.0; 2]);
        assert!(lu_decompose(&mut a, 2, &mut perm, &mut scale));
        lu_back_substitute(&a, 2, &perm, &mut b);
        assert!(
            (b[0] - 1.0).abs() < 1e-12 && (b[1] - 3.0).abs() < 1e-12,
            "{b:?}"
        );
        let mut singular = vec![1.0, 2.0, 2.0, 4.0];
        assert!(!lu_decompose(&mut singular, 2, &mut perm, &mut scale));
    }
}
