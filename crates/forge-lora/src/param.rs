//! [`Param`]: a named trainable-or-frozen tensor backed by a candle [`Var`].

use candle_core::{Tensor, Var};
use std::cell::Cell;

thread_local! {
    /// Whether [`Param::tensor`] hands out tracked tensors on this thread (see [`no_grad`]).
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` with gradient tracking off on this thread, as PyTorch's `torch.no_grad()` /
/// `torch.inference_mode()`: inside, [`Param::tensor`] returns detached views of every
/// parameter, trainable or not, so candle records no graph. A forward pass inside keeps no
/// intermediate tensor alive for a backward pass, so its buffers are freed (and reused, warm in
/// cache) as soon as each layer is done, and Forge's fused kernels take their inference paths
/// (nothing kept for a backward pass; activations applied while the product is in cache).
/// Values are the same as outside. Nests, and restores the previous setting when `f`
/// returns or unwinds.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use forge_lora::{no_grad, Param};
///
/// let p = Param::new(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu)?, true)?;
/// assert!(p.tensor().is_variable());
/// no_grad(|| assert!(!p.tensor().is_variable()));
/// assert!(p.tensor().is_variable());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            GRAD_ENABLED.with(|g| g.set(self.0));
        }
    }
    let _restore = Restore(GRAD_ENABLED.with(|g| g.replace(false)));
    f()
}

/// Whether gradient tracking is on for this thread (off inside [`no_grad`]).
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(Cell::get)
}

/// A model parameter: a candle [`Var`] plus a trainable flag.
///
/// `Param` is deliberately not `Clone`: cloning a `Var` shares its storage, so a "copy" would
/// change whenever the original is trained. Use [`DeepClone::try_clone_deep`] for an
/// independent copy, or [`Param::var`] (a shared handle) to hand the parameter to an optimizer.
///
/// The storage is always a `Var`, so a parameter can be unfrozen, merged in place
/// ([`Var::set`]) or handed to an optimizer. [`Param::tensor`] returns the tracked tensor when
/// the parameter is trainable and a detached view of the same storage when it is frozen, so
/// candle's backward pass neither tracks nor returns gradients for frozen parameters.
#[derive(Debug)]
pub struct Param {
    var: Var,
    trainable: bool,
}

impl Param {
    /// Wrap a tensor (copied into a fresh `Var`: later changes to `t` do not reach the parameter).
    ///
    /// # Errors
    /// Candle errors only (allocation).
    pub fn new(t: &Tensor, trainable: bool) -> crate::Result<Self> {
        let var = if t.is_variable() {
            Var::from_tensor(&t.copy()?)?
        } else {
            Var::from_tensor(t)?
        };
        Ok(Self { var, trainable })
    }

    /// Wrap an existing `Var` without copying (shares its storage).
    pub fn from_var(var: Var, trainable: bool) -> Self {
        Self { var, trainable }
    }

    /// The tensor to compute with: tracked when trainable (and gradients are on, see
    /// [`no_grad`]), detached when frozen.
    pub fn tensor(&self) -> Tensor {
        if self.trainable && grad_enabled() {
            self.var.as_tensor().clone()
        } else {
            self.var.as_detached_tensor()
        }
    }

    /// The underlying `Var` (for optimizers and gradient look-ups: `grads.get(param.var())`).
    pub fn var(&self) -> &Var {
        &self.var
    }

    /// Whether the optimizer should update this parameter.
    pub fn is_trainable(&self) -> bool {
        self.trainable
    }

    /// Freeze (`false`) or unfreeze (`true`).
    pub fn set_trainable(&mut self, trainable: bool) {
        self.trainable = trainable;
    }

    /// Number of scalar entries.
    pub fn elem_count(&self) -> usize {
        self.var.elem_count()
    }

    /// Shape as a vector of dimensions.
    pub fn dims(&self) -> Vec<usize> {
        self.var.dims().to_vec()
    }

    /// Overwrite the values in place (shape must match).
    ///
    /// # Errors
    /// [`crate::LoraError::ShapeMismatch`] naming `name` when shapes differ.
    pub fn set(&self, name: &str, value: &Tensor) -> crate::Result<()> {
        if value.dims() != self.var.dims() {
            return Err(crate::LoraError::ShapeMismatch {
                tensor: name.to_string(),
                expected: self.dims(),
                got: value.dims().to_vec(),
            });
        }
        let value = value
            .to_dtype(self.var.dtype())?
            .to_device(self.var.device())?;
        self.var.set(&value)?;
        Ok(())
    }
}

/// An independent copy: every parameter gets fresh storage, so training the copy leaves the
/// original unchanged (and the reverse). Implemented by [`Param`], [`crate::LoraAdapter`],
/// [`crate::LoraLinear`], and by models built from them.
pub trait DeepClone: Sized {
    /// Copy with fresh parameter storage (values, trainable flags and other state kept).
    ///
    /// # Errors
    /// Candle errors only (allocation on the parameter's device).
    fn try_clone_deep(&self) -> crate::Result<Self>;
}

impl DeepClone for Param {
    fn try_clone_deep(&self) -> crate::Result<Self> {
        // `Var::from_tensor` of a non-variable tensor copies it into new storage.
        Ok(Self {
            var: Var::from_tensor(&self.var.as_detached_tensor())?,
            trainable: self.trainable,
        })
    }
}

impl<T: DeepClone> DeepClone for Vec<T> {
    fn try_clone_deep(&self) -> crate::Result<Self> {
        self.iter().map(DeepClone::try_clone_deep).collect()
    }
}

impl<T: DeepClone> DeepClone for Option<T> {
    fn try_clone_deep(&self) -> crate::Result<Self> {
        self.as_ref().map(DeepClone::try_clone_deep).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn deep_clone_does_not_share_storage() {
        let p = Param::new(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap(), true).unwrap();
        let q = p.try_clone_deep().unwrap();
        p.set("p", &Tensor::new(&[5.0f32, 6.0], &Device::Cpu).unwrap())
            .unwrap();
        assert_eq!(q.tensor().to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
        assert!(q.is_trainable());
    }

    #[test]
    fn no_grad_detaches_nests_and_restores() {
        let p = Param::new(&Tensor::new(&[1.0f32, 2.0], &Device::Cpu).unwrap(), true).unwrap();
        let frozen = Param::new(&Tensor::new(&[3.0f32], &Device::Cpu).unwrap(), false).unwrap();
        assert!(p.tensor().is_variable() && grad_enabled());
        no_grad(|| {
            assert!(!grad_enabled());
            let t = p.tensor();
            assert!(!t.is_variable());
            // the same storage: values equal, and a later set reaches the detached view
            assert_eq!(t.to_vec1::<f32>().unwrap(), vec![1.0, 2.0]);
            no_grad(|| assert!(!p.tensor().is_variable()));
            assert!(!grad_enabled());
            assert!(!frozen.tensor().is_variable());
        });
        assert!(grad_enabled() && p.tensor().is_variable());
        // a panic inside restores the setting too
        let r = std::panic::catch_unwind(|| no_grad(|| panic!("inside")));
        assert!(r.is_err() && grad_enabled());
        // a backward pass through a no_grad forward finds no gradient for the parameter
        let y = no_grad(|| (p.tensor() * 2.0).unwrap().sum_all().unwrap());
        let grads = y.backward().unwrap();
        assert!(grads.get(p.var().as_tensor()).is_none());
    }
}
