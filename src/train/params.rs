//! The trainable tensors of a classifier, addressed by slot: the paper's "layers" j = 1..L.
//!
//! Every weight matrix, bias, LayerNorm gain and bias of the encoder is its own slot, then the
//! head's weight and bias. Embeddings (and their LayerNorm) are frozen unless asked otherwise.
//! Slots are ordered as the module is traversed, which is stable for a given model config.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{Gradients, Tensor};

use crate::model::Classifier;
use crate::model::load::hf_name;

/// Which optimiser group a slot belongs to (separate learning rates, separate PAC init).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Group {
    Encoder,
    Head,
}

/// One trainable tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// HF-style name, e.g. `bert.encoder.layer.0.attention.self.query.weight` or `out.bias`.
    pub name: String,
    /// The shape as Burn stores it (Linear weights are `[in, out]`).
    pub shape: Vec<usize>,
    pub group: Group,
}

impl Slot {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The trainable slots of `model`; `train_embeddings` unfreezes the embedding tensors.
pub fn slots(model: &Classifier, train_embeddings: bool) -> Vec<Slot> {
    let mut visitor = SlotVisitor {
        path: Vec::new(),
        train_embeddings,
        slots: Vec::new(),
    };
    model.visit(&mut visitor);
    visitor.slots
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

struct SlotVisitor {
    path: Vec<String>,
    train_embeddings: bool,
    slots: Vec<Slot>,
}

impl ModuleVisitor for SlotVisitor {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let path = self.path.join(".");
        if is_trainable(&path, self.train_embeddings) {
            self.slots.push(Slot {
                name: hf_name(&path),
                shape: param.val().dims().to_vec(),
                group: group_of(&path),
            });
        }
    }
}

/// Replaces every trainable tensor by `f(slot index, tensor flattened to 1-D)`, keeping
/// parameter ids; frozen tensors pass through. `f` sees plain (untracked) tensors; the results
/// are tracked again when `model` lives on an autodiff device.
pub fn map_slots(
    model: Classifier,
    train_embeddings: bool,
    f: impl FnMut(usize, Tensor<1>) -> Tensor<1>,
) -> Classifier {
    let mut mapper = SlotMapper {
        path: Vec::new(),
        train_embeddings,
        index: 0,
        f,
    };
    model.map(&mut mapper)
}

struct SlotMapper<F> {
    path: Vec<String>,
    train_embeddings: bool,
    index: usize,
    f: F,
}

impl<F: FnMut(usize, Tensor<1>) -> Tensor<1>> ModuleMapper for SlotMapper<F> {
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

/// Calls `f(slot index, value, gradient)` for every trainable tensor in slot order, with the
/// value (plain) and its gradient in `grads` (if any) flattened to 1-D.
pub fn visit_slots(
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

type SlotCallback<'a> = &'a mut dyn FnMut(Tensor<1>, Option<Tensor<1>>);

struct ValueVisitor<'a> {
    path: Vec<String>,
    train_embeddings: bool,
    grads: Option<&'a Gradients>,
    f: SlotCallback<'a>,
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
