# Included by tests/CMakeLists.txt: the tests of threads and of allocation faults.
#
#   concurrency_<tier>  test_concurrency: threads sharing one context and using their own,
#                       every output bitwise equal to a serial run (test_concurrency.c)
#   faults_<tier>       test_faults: workspace allocations made to fail (LGH_FAULT_INJECT,
#                       src/core/context.h): the status, the message, nothing written, the
#                       next call fine (test_faults.c)
#
# The _gpu tiers run on CUDA device 0 and exit 77 (skipped) without one.
#
# Under ThreadSanitizer (a CPU build of its own; the top CMakeLists.txt's LGH_SANITIZE):
#
#   cmake -S . -B build-tsan -DLGH_WITH_CUDA=OFF -DLGH_SANITIZE=thread \
#         -DCMAKE_BUILD_TYPE=RelWithDebInfo
#   cmake --build build-tsan -j --target test_concurrency test_faults test_errors
#   ctest --test-dir build-tsan -R 'concurrency_cpu|faults_cpu|errors_cpu' --output-on-failure
#
# libgomp is not built for TSan (its barriers read as races), so in such a build these
# tests run with OMP_THREAD_LIMIT=1: the CPU engine's parallel regions get one thread each,
# and the threads that race are the test's own. TSan reports make the test fail
# (halt_on_error, exit code 66).
foreach(prog test_concurrency test_faults)
  add_executable(${prog} ${prog}.c)
  target_link_libraries(${prog} PRIVATE lgh_test_support)
  target_compile_options(${prog} PRIVATE -Wall -Wextra)
endforeach()

add_test(NAME concurrency_cpu COMMAND test_concurrency --tier cpu)
add_test(NAME concurrency_gpu COMMAND test_concurrency --tier gpu)
add_test(NAME faults_cpu COMMAND test_faults --tier cpu)
add_test(NAME faults_gpu COMMAND test_faults --tier gpu)
set_tests_properties(concurrency_cpu faults_cpu PROPERTIES LABELS cpu TIMEOUT 900)
set_tests_properties(concurrency_gpu faults_gpu PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
if(LGH_SANITIZE MATCHES "thread")
  set_tests_properties(concurrency_cpu faults_cpu errors_cpu PROPERTIES
    ENVIRONMENT "OMP_THREAD_LIMIT=1;TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1")
endif()
