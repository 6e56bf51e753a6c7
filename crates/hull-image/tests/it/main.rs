//! Integration tests of the image store, offline: a real registry (Debian's
//! `docker-registry`) on 127.0.0.1, images built here and pushed with skopeo, archives made
//! by skopeo, layers written by hand. A test whose tools are missing fails saying what to
//! install.

mod archives;
mod fixtures;
mod layers;
mod pull;
mod registry;
