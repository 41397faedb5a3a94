# PyTorch parity (tests/parity/*.py, run with /usr/bin/python3) and the safetensors reader/writer.
add_executable(test_parity ${CMAKE_CURRENT_SOURCE_DIR}/test_parity.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_safetensors.cpp
  ${CMAKE_CURRENT_SOURCE_DIR}/test_import.cpp)
target_include_directories(test_parity PRIVATE ${PROJECT_SOURCE_DIR})
target_link_libraries(test_parity PRIVATE flashlm::flashlm flashlm_models flashlm_warnings doctest::doctest flashlm_test_main)
target_compile_definitions(test_parity PRIVATE FLASHLM_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
add_test(NAME parity COMMAND test_parity)
set_target_properties(test_parity PROPERTIES UNITY_BUILD ${FLASHLM_TEST_UNITY} UNITY_BUILD_BATCH_SIZE 0)
