// Package plugins holds the transform plugin protocol (proto), the author
// SDK (sdk), the host side that launches and supervises plugin processes,
// and the built-in plugins.
package plugins
