# CTest driver: install the built minidl into a scratch prefix, build tests/consumer against it, run it.
# Expects BUILD_DIR, SOURCE_DIR, WORK_DIR, CXX_FLAGS, BUILD_TYPE.
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "cmake --install failed (${rc})")
endif()
# The package asks only for what linking needs, never for build-only header libraries; the command is installed.
file(GLOB targets ${WORK_DIR}/prefix/lib*/cmake/minidl/minidlTargets*.cmake)
foreach(file ${targets} ${WORK_DIR}/prefix/lib/cmake/minidl/minidlConfig.cmake)
  file(READ ${file} text)
  if(text MATCHES "Eigen3::|nlohmann_json::|find_dependency\\(Eigen3|find_dependency\\(nlohmann")
    message(FATAL_ERROR "${file} asks consumers for a build-only dependency (Eigen3 or nlohmann_json)")
  endif()
endforeach()
execute_process(COMMAND ${WORK_DIR}/prefix/bin/minidl --help RESULT_VARIABLE rc OUTPUT_QUIET)
if(rc)
  message(FATAL_ERROR "the installed minidl command did not run (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
                        -DCMAKE_BUILD_TYPE=${BUILD_TYPE} "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer with find_package(minidl) failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
execute_process(COMMAND ${WORK_DIR}/build/consumer RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "the consumer's training steps did not lower the loss (${rc})")
endif()
