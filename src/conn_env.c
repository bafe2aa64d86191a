/*
 * conn_env: the environment a loop gives its connections (see
 * include/tailfence/conn_env.h): the id counter and the two references
 * the owner keeps current.
 */
#include "tailfence/conn_env.h"

#include "tailfence/config.h"
#include "tailfence/tailnet.h"

uint64_t conn_env_next_id(const struct conn_env *env)
{
	return atomic_fetch_add_explicit(env->last_id, 1, memory_order_relaxed) + 1;
}

void conn_env_set_config(struct conn_env *env, struct config *cfg)
{
	config_ref(cfg);
	config_unref(env->cfg);
	env->cfg = cfg;
}

void conn_env_set_view(struct conn_env *env, struct tailnet_view *view)
{
	tailnet_view_ref(view);
	tailnet_view_unref(env->view);
	env->view = view;
}

void conn_env_clear(struct conn_env *env)
{
	config_unref(env->cfg);
	tailnet_view_unref(env->view);
	env->cfg = NULL;
	env->view = NULL;
}
