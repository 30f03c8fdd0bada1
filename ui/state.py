"""Session-state keys of the pages, in one place so that none collide."""

#: Home page: show the OpenStreetMap basemap (needs the internet).
HOME_BASEMAP = "home.basemap"

#: Home page: which view of the map (all of Greenland or one data set).
HOME_VIEW = "home.view"
