# PyTorch parity (tests/parity/*.py, run with /usr/bin/python3) and the safetensors reader/writer.
add_executable(test_parity ${CMAKE_CURRENT_SOURCE_DIR}/test_parity.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_import.cpp)
target_include_directories(test_parity PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(test_parity PRIVATE flashlm::flashlm flashlm_models flashlm_warnings doctest::doctest flashlm_test_main)
target_compile_definitions(test_parity PRIVATE FLASHLM_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_test(NAME parity COMMAND test_parity)
set_target_properties(test_parity PROPERTIES UNITY_BUILD ${FLASHLM_TEST_UNITY} UNITY_BUILD_BATCH_SIZE 0)
# Five training steps against PyTorch from the same initial weights and batch (the recipe's optimizer,
# clip and loss): bench_train_step_cli --save-init and bench/torch_train_step.py --init, which
# bench/compare_pytorch.sh uses so that its two sides train the same numbers.
if(FLASHLM_BUILD_BENCH)
  add_test(NAME train_parity COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/parity/train_steps.sh
           $<TARGET_FILE:bench_train_step_cli> ${PROJECT_SOURCE_DIR})
endif()
