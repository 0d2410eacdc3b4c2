//! garden's images: sources, registry client, layer store.
