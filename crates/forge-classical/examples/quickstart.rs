//! Quick start: transfer a housing-price model from the north of California to the south with
//! 1% of the southern training data, comparing target-only ridge with regularized transfer.
//!
//! Run: `cargo run -p forge-classical --example quickstart`

use anyhow::Result;
use forge_classical::{cv, metrics, regularized_transfer_linear, ridge};
use forge_data::{california_housing, datasets_dir, Budget};

fn main() -> Result<()> {
    let split = california_housing(&datasets_dir())?.standardized()?;
    let source = ridge(&split.source.x, &split.source.y, 1.0)?;
    let fs = split.few_shot(0.3, Budget::Fraction(0.01), 0)?;
    let (x, y) = (&fs.target_train.x, &fs.target_train.y);
    let lams = [1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4];
    let p = cv::CvParams::default();
    // Choose lam by 5-fold CV on the target training rows only.
    let lam_t = cv::select(x, y, &lams, &p, |xt, yt, xv, yv, &l| {
        Ok(-metrics::mse(yv, &ridge(xt, yt, l)?.predict(xv)?)?)
    })?
    .best;
    let lam_r = cv::select(x, y, &lams, &p, |xt, yt, xv, yv, &l| {
        Ok(-metrics::mse(
            yv,
            &regularized_transfer_linear(xt, yt, &source, l)?.predict(xv)?,
        )?)
    })?
    .best;
    let target_only = ridge(x, y, lam_t)?;
    let transfer = regularized_transfer_linear(x, y, &source, lam_r)?;
    let te = &fs.target_test;
    println!(
        "target rows used for training: {}",
        fs.target_train.n_samples()
    );
    println!(
        "source-only          R2 = {:.3}",
        metrics::r2(&te.y, &source.predict(&te.x)?)?
    );
    println!(
        "target-only (lam {lam_t:>6}) R2 = {:.3}",
        metrics::r2(&te.y, &target_only.predict(&te.x)?)?
    );
    println!(
        "regularized (lam {lam_r:>6}) R2 = {:.3}",
        metrics::r2(&te.y, &transfer.predict(&te.x)?)?
    );
    Ok(())
}
