//! The trainable tensors of a classifier, j = 1..L (the paper calls each one a "layer"; this
//! crate says "trainable tensor" and indexes them by j everywhere).
//!
//! Every weight matrix, bias, LayerNorm gain and bias of the encoder is its own trainable
//! tensor, then the head's weight and bias. Embeddings (and their LayerNorm) are frozen unless
//! asked otherwise. They are ordered as the module is traversed, which is stable for a given
//! model config.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::Classifier;
use super::load::hf_name;

/// Which optimiser group a trainable tensor belongs to (separate learning rates, separate PAC init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Group {
    Encoder,
    Head,
}

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Trainable {
    /// HF-style name, e.g. `bert.encoder.layer.0.attention.self.query.weight` or `out.bias`.
    pub name: String,
    /// The shape as Burn stores it (Linear weights are `[in, out]`).
    pub shape: Vec<usize>,
    pub group: Group,
}

impl Trainable {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The trainable tensors of `model`; `train_embeddings` unfreezes the embedding tensors.
pub fn list(model: &Classifier, train_embeddings: bool) -> Vec<Trainable> {
    let mut visitor = ListVisitor {
        path: Vec::new(),
        train_embeddings,
        tensors: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.tensors
}

fn is_trainable(path: &str, train_embeddings: bool) -> bool {
    train_embeddings || !path.starts_with("bert.embeddings.")
}

fn group_of(path: &str) -> Group {
    if path.starts_with("bert.") {
        Group::Encoder
    } else {
        Group::Head
    }
}

struct ListVisitor {
    path: Vec<String>,
    train_embeddings: bool,
    tensors: Vec<Trainable>,
}

impl ModuleVisitor for ListVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        if is_trainable(&path, self.train_embeddings) {
            self.tensors.push(Trainable {
                name: hf_name(&path),
                shape: param.val().dims().to_vec(),
                group: group_of(&path),
            });
        }
    }
}

/// Replaces every trainable tensor by `f(j, tensor flattened to 1-D)`, keeping
/// parameter ids; frozen tensors pass through. `f` sees plain (untracked) tensors; the results
/// are tracked again when `model` lives on an autodiff device.
pub fn map(
    model: Classifier,
    train_embeddings: bool,
    f: impl FnMut(usize, Tensor<1>) -> Tensor<1>,
) -> Classifier {
    let mut mapper = TrainableMapper {
        path: Vec::new(),
        train_embeddings,
        index: 0,
        f,
    };
    model.map(&mut mapper)
}

struct TrainableMapper<F> {
    path: Vec<String>,
    train_embeddings: bool,
    index: usize,
    f: F,
}

impl<F: FnMut(usize, Tensor<1>) -> Tensor<1>> ModuleMapper for TrainableMapper<F> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !is_trainable(&self.path.join("."), self.train_embeddings) {
            return param;
        }
        let (id, tensor, mapper): (ParamId, Tensor<D>, _) = param.consume();
        let dims = tensor.dims();
        let tracked = tensor.is_autodiff();
        let plain = if tracked { tensor.inner() } else { tensor };
        let updated = (self.f)(self.index, flat(plain)).reshape(dims);
        self.index += 1;
        let updated = if tracked {
            Tensor::from_inner(updated).require_grad()
        } else {
            updated
        };
        Param::from_mapped_value(id, updated, mapper)
    }
}

fn flat<const D: usize>(t: Tensor<D>) -> Tensor<1> {
    let numel = t.dims().iter().product::<usize>();
    t.reshape([numel])
}

/// Calls `f(j, value, gradient)` for every trainable tensor in order, with the
/// value (plain) and its gradient in `grads` (if any) flattened to 1-D.
pub fn visit(
    model: &Classifier,
    train_embeddings: bool,
    grads: Option<&Gradients>,
    mut f: impl FnMut(usize, Tensor<1>, Option<Tensor<1>>),
) {
    let mut index = 0;
    let mut call = |value: Tensor<1>, grad: Option<Tensor<1>>| {
        f(index, value, grad);
        index += 1;
    };
    let mut visitor = ValueVisitor {
        path: Vec::new(),
        train_embeddings,
        grads,
        f: &mut call,
    };
    model.visit(&mut visitor);
}

type TensorCallback<'a> = &'a mut dyn FnMut(Tensor<1>, Option<Tensor<1>>);

struct ValueVisitor<'a> {
    path: Vec<String>,
    train_embeddings: bool,
    grads: Option<&'a Gradients>,
    f: TensorCallback<'a>,
}

impl ModuleVisitor for ValueVisitor<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if is_trainable(&self.path.join("."), self.train_embeddings) {
            let value = param.val();
            let grad = self.grads.and_then(|g| value.grad(g)).map(flat);
            let value = if value.is_autodiff() {
                value.inner()
            } else {
                value
            };
            (self.f)(flat(value), grad);
        }
    }
}
