# anycell's offline stand-in for VAMP's cmake/FetchInitCPM.cmake (vamp-planner 0.6.4).
#
# Why: VAMP's own file downloads CPM.cmake, and CPM then clones nigh, SIMDxorshift, pdqsort
# and nanobind from GitHub at configure time, which cannot work on a machine that reaches
# package registries only. Passed first on CMAKE_MODULE_PATH (VAMP appends its own cmake/
# folder after ours), this file is found instead of VAMP's and defines CPMAddPackage /
# CPMFindPackage so that each request is answered locally:
#   - nanobind            -> find_package(nanobind CONFIG), the PyPI build requirement
#   - pdqsort             -> the installed header (Debian: pdqsort-dev)
#   - Eigen3 (WASM only)  -> find_package(Eigen3 CONFIG)
#   - nigh, SIMDxorshift  -> source trees under VAMP_OFFLINE_DEPS (the user's copies at
#                            the commits VAMP pins; nothing is downloaded here)
# Anything else stops the configure with the name, so a new VAMP dependency is noticed.
#
# Written for anycell's bench/bench_motion.py (--vamp-deps DIR), which passes
#   -DCMAKE_MODULE_PATH=<this folder> -DVAMP_OFFLINE_DEPS=DIR

set(CPM_USE_LOCAL_PACKAGES ON)

if(NOT VAMP_OFFLINE_DEPS)
  message(FATAL_ERROR "anycell offline CPM: set -DVAMP_OFFLINE_DEPS=DIR (DIR/nigh, DIR/SIMDxorshift)")
endif()

# A source tree the user supplied: <name>_SOURCE_DIR and <name>_ADDED as CPM would set them.
macro(_anycell_cpm_local name folder probe)
  set(_anycell_dir "${VAMP_OFFLINE_DEPS}/${folder}")
  if(NOT EXISTS "${_anycell_dir}/${probe}")
    message(FATAL_ERROR "anycell offline CPM: ${name} wanted, ${_anycell_dir}/${probe} not found")
  endif()
  set(${name}_SOURCE_DIR "${_anycell_dir}")
  set(${name}_BINARY_DIR "${CMAKE_BINARY_DIR}/_deps/${folder}-build")
  set(${name}_ADDED YES)
  message(STATUS "anycell offline CPM: ${name} from ${_anycell_dir}")
endmacro()

# A macro, not a function: the variables set here (and those nanobind's config file sets)
# must land in the scope of Dependencies.cmake / Python.cmake, as CPM's would.
macro(CPMAddPackage)
  set(_anycell_args ${ARGN})
  list(LENGTH _anycell_args _anycell_n)
  if(_anycell_n EQUAL 1)
    # shorthand "gh:owner/repo#tag" (or "gh:owner/repo@version")
    string(REGEX REPLACE "^gh:[^/]+/([^#@]+).*$" "\\1" _anycell_name "${_anycell_args}")
  else()
    cmake_parse_arguments(_anycell "" "NAME;GITHUB_REPOSITORY;VERSION;GIT_TAG;URL" "" ${ARGN})
    if(_anycell_NAME)
      set(_anycell_name "${_anycell_NAME}")
    else()
      string(REGEX REPLACE "^[^/]+/" "" _anycell_name "${_anycell_GITHUB_REPOSITORY}")
    endif()
  endif()
  string(TOLOWER "${_anycell_name}" _anycell_lower)
  if(_anycell_lower STREQUAL "nanobind")
    find_package(nanobind CONFIG REQUIRED)
    set(nanobind_ADDED NO)
  elseif(_anycell_lower STREQUAL "pdqsort")
    find_path(_anycell_pdqsort pdqsort.h PATH_SUFFIXES pdqsort)
    if(NOT _anycell_pdqsort)
      message(FATAL_ERROR "anycell offline CPM: pdqsort.h not installed (Debian: pdqsort-dev)")
    endif()
    set(pdqsort_SOURCE_DIR "${_anycell_pdqsort}")
    set(pdqsort_ADDED YES)
  elseif(_anycell_lower STREQUAL "eigen3")
    find_package(Eigen3 REQUIRED NO_MODULE)
    set(Eigen3_ADDED NO)
  elseif(_anycell_lower STREQUAL "nigh")
    _anycell_cpm_local(nigh nigh "src/nigh")
  elseif(_anycell_lower STREQUAL "simdxorshift")
    _anycell_cpm_local(SIMDxorshift SIMDxorshift "src/simdxorshift128plus.c")
  else()
    message(FATAL_ERROR "anycell offline CPM: no local source for '${_anycell_args}'")
  endif()
endmacro()

macro(CPMFindPackage)
  CPMAddPackage(${ARGN})
endmacro()
