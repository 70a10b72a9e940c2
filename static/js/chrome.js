// Pages with nothing but the header's controls (the error page).
import { setupChrome } from './lib.js';

setupChrome();
