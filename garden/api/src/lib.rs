//! garden's wire types, Backend trait, HTTP server and client.
