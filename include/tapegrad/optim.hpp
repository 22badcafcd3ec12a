// The optimizers of the AdaBound paper and their baselines, the schedulers and optim::make().
//   SGD (momentum, Nesterov)      tapegrad/optim/sgd.hpp
//   Adagrad                       tapegrad/optim/adagrad.hpp
//   Adam, AMSGrad, AdamW          tapegrad/optim/adam.hpp
//   AdaBound, AMSBound, AdaBoundW tapegrad/optim/adabound.hpp
//   StepLR, MultiStepLR, CosineAnnealingLR, LinearLR, ReduceLROnPlateau   tapegrad/optim/scheduler.hpp
//   make("adam:lr=1e-3", params)  tapegrad/optim/make.hpp
#pragma once

#include "tapegrad/optim/adabound.hpp"
#include "tapegrad/optim/adagrad.hpp"
#include "tapegrad/optim/adam.hpp"
#include "tapegrad/optim/make.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/optim/scheduler.hpp"
#include "tapegrad/optim/sgd.hpp"
