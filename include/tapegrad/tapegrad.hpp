// tapegrad: the umbrella header. Users write `namespace tg = tapegrad;`.
#pragma once

#include "tapegrad/autograd.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/io.hpp"
#include "tapegrad/nn/conv.hpp"
#include "tapegrad/nn/init.hpp"
#include "tapegrad/nn/layers.hpp"
#include "tapegrad/nn/module.hpp"
#include "tapegrad/nn/rnn.hpp"
#include "tapegrad/nn/utils.hpp"
#include "tapegrad/ops.hpp"
#include "tapegrad/optim.hpp"
#include "tapegrad/tensor.hpp"
