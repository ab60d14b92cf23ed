//! The folded weights of a model as named tensors, for saving and loading
//! them in a native format (batch norm already folded in, nothing to compute).

/// A view of one folded tensor: its name, e.g. `modules[1].residual.kernel`,
/// its shape and its values in row-major order.
pub type TensorView<'a> = (String, Vec<usize>, &'a [f32]);

/// A mutable view of one folded tensor.
pub type TensorViewMut<'a> = (String, Vec<usize>, &'a mut [f32]);

/// Weights that can list their tensors by name.
pub trait FoldedTensors {
    /// Every tensor, in a fixed order; `layer` prefixes the names.
    fn tensors<'a>(&'a self, layer: &str) -> Vec<TensorView<'a>>;

    /// Every tensor, mutable, in the same order as [`FoldedTensors::tensors`].
    fn tensors_mut<'a>(&'a mut self, layer: &str) -> Vec<TensorViewMut<'a>>;
}
