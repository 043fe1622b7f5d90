//! The SQL API: values, parameters, rows, what a statement reports, and the
//! statement machinery the `Actor` methods run on.

pub(crate) mod cache;
pub(crate) mod params;
pub(crate) mod result;
pub(crate) mod row;
pub(crate) mod statement;
pub(crate) mod transaction;
pub(crate) mod value;
