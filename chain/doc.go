// Package chain is dchain's configuration model: the registries ("instances",
// one per region) declared once in a config file, and the delivery chains that
// refer to them by name. It parses YAML keeping line numbers, validates every
// field with errors that name file, line and field, and holds the pure
// matching rules (scope, tag filters, trigger modes) the workflow applies.
package chain
