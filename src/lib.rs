//! Lethe: an on-premises appliance that trains a masked diffusion language model on a private corpus,
//! audits it for memorization, and gates its release. See `ARCHITECTURE.md` in the shared docs for the
//! module map; an arrow may only point down this list.

pub mod app;
pub mod audit;
pub mod cli;
pub mod corpus;
pub mod eval;
pub mod fuzzing;
pub mod ledger;
pub mod model;
pub mod policy;
pub mod release;
pub mod server;
pub mod store;
pub mod train;
pub mod vault;
