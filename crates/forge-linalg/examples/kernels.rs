//! Kernel matrix, its spectrum and a ridge solve with forge-linalg.
//!
//! `cargo run -p forge-linalg --example kernels`
use candle_core::{DType, Device, Tensor};
use forge_linalg::{dense, ops, rng};

fn main() -> forge_linalg::Result<()> {
    let dev = Device::Cpu;
    let mut r = rng::seeded_rng(0);
    let x = rng::randn(&[200, 5], DType::F64, &dev, &mut r)?;
    let bandwidth = ops::median_heuristic(&x, 1000)?;
    let k = ops::rbf_kernel(&x, &x, bandwidth)?;
    let (w, _) = dense::eigh(&k)?;
    let w: Vec<f64> = w.to_vec1()?;
    println!("median-heuristic bandwidth: {bandwidth:.4}");
    println!("largest kernel eigenvalues: {:?}", &w[w.len() - 3..]);
    // Kernel ridge regression: alpha = (K + lam I)^-1 y
    let y = rng::randn(&[200], DType::F64, &dev, &mut r)?;
    let reg = (k + (Tensor::eye(200, DType::F64, &dev)? * 0.1)?)?;
    let alpha = dense::cholesky_solve(&reg, &y)?;
    println!(
        "||alpha||^2 = {:.4}",
        alpha.sqr()?.sum_all()?.to_scalar::<f64>()?
    );
    Ok(())
}
