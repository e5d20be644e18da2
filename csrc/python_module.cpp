// Makes the shared library importable as the Python module pitome_kernels._C; importing it
// runs the static TORCH_LIBRARY registrations of the kernels linked into it.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "pitome_kernels C++ kernels (registered in torch.ops.pitome)", -1,
      nullptr};
  return PyModule_Create(&module_def);
}
