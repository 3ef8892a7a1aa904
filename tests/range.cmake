# test_range: float16 data whose pre-norm lies beyond float16's range; every engine either
# right or declining (test_range.c). Included from tests/CMakeLists.txt.
add_executable(test_range ${CMAKE_CURRENT_LIST_DIR}/test_range.c)
target_link_libraries(test_range PRIVATE lgh_test_support)
target_compile_options(test_range PRIVATE -Wall -Wextra)
add_test(NAME range_cpu COMMAND test_range --engine cpu)
set_tests_properties(range_cpu PROPERTIES LABELS cpu)
foreach(engine cublaslt sm80 sm90 auto)
  add_test(NAME range_${engine} COMMAND test_range --engine ${engine})
  set_tests_properties(range_${engine} PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
endforeach()
