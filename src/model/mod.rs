//! The model module owns everything that runs on libtorch: for now, what the runtime is (version,
//! devices, threads); the transformer, objectives and sampler join it with the trainer.

pub mod runtime;
