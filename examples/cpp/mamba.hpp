// mamba.hpp: a small header-only RAII wrapper over the C API in mamba.h.
//
// - mamba::Model owns a mamba_model (move-only); it is immutable and may be shared
//   by reference between threads.
// - mamba::Session owns a mamba_session (move-only); one thread at a time.
// - Failures throw mamba::Error, carrying the status and mamba_last_error().
// - A callback passed to Session::generate may throw: the exception is caught
//   before it could cross the C boundary, generation stops, and it is rethrown.
#ifndef MAMBA_HPP
#define MAMBA_HPP

#include <mamba.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mamba {

class Error : public std::runtime_error {
public:
    Error(mamba_status status, const std::string &what)
        : std::runtime_error(what), status_(status) {}
    mamba_status status() const noexcept { return status_; }

private:
    mamba_status status_;
};

inline void check(mamba_status st, const char *what) {
    if (st != MAMBA_OK) throw Error(st, std::string(what) + ": " + mamba_last_error());
}

class Model {
public:
    static Model load_file(const std::string &path, const mamba_model_params *p = nullptr) {
        mamba_model *m = nullptr;
        check(mamba_model_load_file(path.c_str(), p, &m), "load_file");
        return Model(m);
    }
    static Model load_memory(const void *data, size_t len, const mamba_model_params *p = nullptr) {
        mamba_model *m = nullptr;
        check(mamba_model_load_memory(data, len, p, &m), "load_memory");
        return Model(m);
    }

    int32_t vocab_size() const { return mamba_model_vocab_size(m_.get()); }
    int32_t d_model() const { return mamba_model_d_model(m_.get()); }
    int32_t n_layer() const { return mamba_model_n_layer(m_.get()); }
    bool is_byte_level() const { return mamba_model_is_byte_level(m_.get()) != 0; }
    const mamba_model *get() const noexcept { return m_.get(); }

private:
    explicit Model(mamba_model *m) : m_(m) {}
    struct Free {
        void operator()(mamba_model *m) const noexcept { mamba_model_free(m); }
    };
    std::unique_ptr<mamba_model, Free> m_;
};

class Session {
public:
    explicit Session(const Model &model) : vocab_(model.vocab_size()), d_(model.d_model()) {
        mamba_session *s = nullptr;
        check(mamba_session_init(model.get(), &s), "session_init");
        s_.reset(s);
    }

    void reset() { check(mamba_session_reset(s_.get()), "reset"); }

    // Feed one token; the next-token logits (V floats).
    std::vector<float> step_token(int32_t token) {
        std::vector<float> logits(static_cast<size_t>(vocab_));
        check(mamba_session_step_token(s_.get(), token, logits.data(), logits.size()), "step_token");
        return logits;
    }

    // Feed tokens; the logits after the last one.
    std::vector<float> prefill(const std::vector<int32_t> &tokens) {
        std::vector<float> logits(static_cast<size_t>(vocab_));
        check(mamba_session_prefill(s_.get(), tokens.data(), tokens.size(), logits.data(),
                                    logits.size()),
              "prefill");
        return logits;
    }

    // Feed one input vector (D floats); the final hidden state (D floats).
    std::vector<float> step_embedding(const std::vector<float> &x) {
        std::vector<float> hidden(static_cast<size_t>(d_));
        check(mamba_session_step_embedding(s_.get(), x.data(), x.size(), hidden.data(),
                                           hidden.size()),
              "step_embedding");
        return hidden;
    }

    std::vector<uint8_t> save_state() const {
        std::vector<uint8_t> blob(mamba_session_state_size(s_.get()));
        size_t written = 0;
        check(mamba_session_state_save(s_.get(), blob.data(), blob.size(), &written), "state_save");
        blob.resize(written);
        return blob;
    }

    void load_state(const std::vector<uint8_t> &blob) {
        check(mamba_session_state_load(s_.get(), blob.data(), blob.size()), "state_load");
    }

    // Generate up to max_tokens after the prompt. on_token (optional) sees each token
    // as it is sampled and returns false to stop early (not an error here).
    std::vector<int32_t> generate(const std::vector<int32_t> &prompt, size_t max_tokens,
                                  const mamba_sampling_params &params,
                                  const std::function<bool(int32_t)> &on_token = {}) {
        Ctx ctx{on_token, {}, {}, false};
        mamba_status st = mamba_session_generate(s_.get(), prompt.data(), prompt.size(), &params,
                                                 max_tokens, &Session::trampoline, &ctx);
        if (ctx.error) std::rethrow_exception(ctx.error);
        if (!(st == MAMBA_ERR_ABORTED && ctx.stopped)) check(st, "generate");
        return ctx.tokens;
    }

    mamba_session *get() noexcept { return s_.get(); }

private:
    struct Ctx {
        const std::function<bool(int32_t)> &on_token;
        std::vector<int32_t> tokens;
        std::exception_ptr error;
        bool stopped;
    };

    // C callback: never lets an exception escape into the library.
    static int32_t trampoline(void *user_data, int32_t token) {
        Ctx *ctx = static_cast<Ctx *>(user_data);
        try {
            ctx->tokens.push_back(token);
            if (ctx->on_token && !ctx->on_token(token)) {
                ctx->stopped = true;
                return 1;
            }
            return 0;
        } catch (...) {
            ctx->error = std::current_exception();
            return 1;
        }
    }

    struct Free {
        void operator()(mamba_session *s) const noexcept { mamba_session_free(s); }
    };
    int32_t vocab_;
    int32_t d_;
    std::unique_ptr<mamba_session, Free> s_;
};

}  // namespace mamba

#endif  // MAMBA_HPP
