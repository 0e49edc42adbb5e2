# Install rules beyond the modules' own (cairn_add_module installs each
# library and its include/): the generated version header, the CMake package
# (cairnConfig.cmake, its version file, the exported targets and FindCAF.cmake)
# and the Debian package cpack -G DEB builds. docs/packaging.md.

set(cairn_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/cairn)

install(FILES ${PROJECT_BINARY_DIR}/generated/include/cairn/version.hpp
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cairn)

install(EXPORT cairnTargets NAMESPACE cairn:: FILE cairnTargets.cmake
        DESTINATION ${cairn_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/cairnConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/generated/cairnConfig.cmake
                              INSTALL_DESTINATION ${cairn_cmake_dir})
# 0.x: a minor release may break the API, so 0.1 accepts 0.1.z only (z >= the
# patch asked for). From 1.0 on this becomes SameMajorVersion.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/generated/cairnConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/generated/cairnConfig.cmake
              ${PROJECT_BINARY_DIR}/generated/cairnConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindCAF.cmake
        DESTINATION ${cairn_cmake_dir})

# cpack -G DEB (scripts/package): one development package with the headers,
# the static libraries, the CMake package and the cairn CLI. Depends lists the
# -dev packages the installed headers and cairnConfig.cmake need; the CLI's
# shared libraries are added by dpkg-shlibdeps.
set(CPACK_PACKAGE_NAME cairn-dev)
set(CPACK_PACKAGE_VENDOR cairn)
set(CPACK_PACKAGE_CONTACT "cairn maintainers <cairn@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "actor-based event-sourced aggregate runtime (C++17): headers, static libraries, CLI")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "libcaf-dev (>= 0.17), libcereal-dev, libspdlog-dev, libfmt-dev, libexpected-dev, \
liblmdb-dev, libxxhash-dev, libsodium-dev, libcpp-httplib-dev, pkg-config")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cmake (>= 3.16), g++")
include(CPack)
