//! The trainable tensors of a classifier, j = 1..L (the paper calls each one a "layer"; this
//! crate says "trainable tensor" and indexes them by j everywhere).
//!
//! Every weight matrix, bias, LayerNorm gain and bias of the encoder is its own trainable
//! tensor, then the head's weight and bias. Embeddings (BERT's and RoBERTa's tables and their
//! LayerNorm, GPT-2's `wte` and `wpe`) are frozen unless asked otherwise. They are ordered as the
//! module is traversed, which is stable for a given model config.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use super::{Classifier, is_embedding};

/// Which optimiser group a trainable tensor belongs to (separate learning rates, separate PAC init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Group {
    Encoder,
    Head,
}

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Trainable {
    /// HF name, e.g. `bert.encoder.layer.0.attention.self.query.weight` or `out.bias`.
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
        path: ModulePath::default(),
        train_embeddings,
        tensors: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor
        .tensors
        .into_iter()
        .map(|(path, shape)| Trainable {
            name: model.hf_name(&path),
            shape,
            group: group_of(&path),
        })
        .collect()
}

fn is_trainable(path: &str, train_embeddings: bool) -> bool {
    train_embeddings || !is_embedding(path)
}

fn group_of(path: &str) -> Group {
    if path.starts_with("encoder.") {
        Group::Encoder
    } else {
        Group::Head
    }
}

/// The dotted path of the module being visited, with enum variants left out (as burn-store
/// names tensors when it skips them).
#[derive(Default)]
struct ModulePath(Vec<Option<String>>);

impl ModulePath {
    fn enter(&mut self, name: &str, container_type: &str) {
        let variant = container_type.starts_with("Enum:");
        self.0.push((!variant).then(|| name.to_string()));
    }

    fn exit(&mut self) {
        self.0.pop();
    }

    fn joined(&self) -> String {
        let parts: Vec<&str> = self.0.iter().flatten().map(String::as_str).collect();
        parts.join(".")
    }
}

struct ListVisitor {
    path: ModulePath,
    train_embeddings: bool,
    tensors: Vec<(String, Vec<usize>)>,
}

impl ModuleVisitor for ListVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.joined();
        if is_trainable(&path, self.train_embeddings) {
            self.tensors.push((path, param.val().dims().to_vec()));
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
        path: ModulePath::default(),
        train_embeddings,
        index: 0,
        f,
    };
    model.map(&mut mapper)
}

struct TrainableMapper<F> {
    path: ModulePath,
    train_embeddings: bool,
    index: usize,
    f: F,
}

impl<F: FnMut(usize, Tensor<1>) -> Tensor<1>> ModuleMapper for TrainableMapper<F> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if !is_trainable(&self.path.joined(), self.train_embeddings) {
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
        path: ModulePath::default(),
        train_embeddings,
        grads,
        f: &mut call,
    };
    model.visit(&mut visitor);
}

type TensorCallback<'a> = &'a mut dyn FnMut(Tensor<1>, Option<Tensor<1>>);

struct ValueVisitor<'a> {
    path: ModulePath,
    train_embeddings: bool,
    grads: Option<&'a Gradients>,
    f: TensorCallback<'a>,
}

impl ModuleVisitor for ValueVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if is_trainable(&self.path.joined(), self.train_embeddings) {
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
