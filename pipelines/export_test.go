package pipelines

// What the external tests (package pipelines_test, which can import the
// table of kinds) need of the package's insides.
var MaxErrors = maxErrors
