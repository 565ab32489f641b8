// Everything for building and training models in one include: the core, layers, functional forms, losses.
#pragma once

#include "minidl/conv_layers.h"
#include "minidl/core.h"
#include "minidl/functional.h"
#include "minidl/layers.h"
#include "minidl/losses.h"
#include "minidl/models.h"
#include "minidl/normalization.h"
#include "minidl/module.h"
#include "minidl/residual.h"
