// BlockMerge: "Merge and generate" renders with the txt2img tab's current settings.
// The tab's button calls window.blockmergeTxt2imgSettings() (see lib_merge/ui/merge_tab.py,
// READ_TXT2IMG) and sends the result as JSON to Python (lib_merge.ui.host.GenSettings).
// Only the DOM is read, by the webui's own element ids, which are the same in A1111 1.10 and Forge;
// nothing of the webui is changed.
(function () {
    "use strict";

    function root() {
        return typeof gradioApp === "function" ? gradioApp() : document;
    }

    function block(id) {
        return root().querySelector("#" + id);
    }

    function text(id) {
        var el = block(id);
        var field = el && el.querySelector("textarea, input");
        return field ? field.value : undefined;
    }

    function number(id) {
        // sliders have a number box; the seed is a number or (an option in Forge) a textbox
        var el = block(id);
        var field = el && (el.querySelector("input[type=number]") || el.querySelector("input, textarea"));
        var value = field ? parseFloat(field.value) : NaN;
        return isFinite(value) ? value : undefined;
    }

    function choice(id) {
        // a dropdown shows its value in an input; the "radio" sampler layout has a checked input
        var el = block(id);
        if (!el) {
            return undefined;
        }
        var checked = el.querySelector("input:checked");
        var field = checked || el.querySelector("input");
        return field && field.value ? field.value : undefined;
    }

    window.blockmergeTxt2imgSettings = function () {
        var s = {
            prompt: text("txt2img_prompt"),
            negative_prompt: text("txt2img_neg_prompt"),
            seed: number("txt2img_seed"),
            steps: number("txt2img_steps"),
            cfg_scale: number("txt2img_cfg_scale"),
            distilled_cfg_scale: number("txt2img_distilled_cfg_scale"),  // Forge (Flux) only
            width: number("txt2img_width"),
            height: number("txt2img_height"),
            sampler_name: choice("txt2img_sampling"),
            scheduler: choice("txt2img_scheduler"),
            batch_size: number("txt2img_batch_size")
        };
        Object.keys(s).forEach(function (k) {
            if (s[k] === undefined) {
                delete s[k];  // missing fields keep GenSettings' defaults
            }
        });
        return s;
    };
})();
