// The official SDK as installed (and pinned) here, for test directories without their own
// node_modules: Node resolves `e2b` from the importing file's directory, so tests/security
// imports it through this module.
export * from 'e2b';
