// The tensor core in one include: tensors, autodiff, ops, random numbers, gradient checking.
#pragma once

#include "minidl/atomic_file.h"
#include "minidl/autograd.h"
#include "minidl/denormal.h"
#include "minidl/error.h"
#include "minidl/gradcheck.h"
#include "minidl/metadata.h"
#include "minidl/ops.h"
#include "minidl/random.h"
#include "minidl/shape.h"
#include "minidl/tensor.h"
#include "minidl/version.h"
